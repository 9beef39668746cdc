/* SPDX-License-Identifier: MIT */
/*
 * Call redirection for query plugins (kprof.h's host->hook): rewrite the
 * GOT slots (JUMP_SLOT and GLOB_DAT relocations) that every loaded module
 * has for a symbol, so its calls go to the plugin's wrapper, as PLT
 * hooking libraries do. A plugin is dlopen()ed long after the app's
 * modules bound their symbols, so it cannot interpose by name the way
 * libkprof.so does; this reaches those already-bound calls. RELRO pages
 * are made writable for the write and read-only again.
 *
 * Limits: x86-64 and other RELA platforms only; modules loaded after the
 * hook was installed keep their own bindings; calls inside the defining
 * library itself (not through its GOT) are not redirected.
 */
#include "state.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct got_arg {
	const char *sym;
	void *repl;
	uintptr_t skip_base[2];
	int n;
};

static void patch(uintptr_t slot, void *repl, uintptr_t relro_lo,
		  uintptr_t relro_hi)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t page = slot & ~((uintptr_t)pg - 1);
	if (mprotect((void *)page, (size_t)pg, PROT_READ | PROT_WRITE) != 0)
		return;
	*(void **)slot = repl;
	if (slot >= relro_lo && slot < relro_hi)
		mprotect((void *)page, (size_t)pg, PROT_READ);
}

static int each_module(struct dl_phdr_info *info, size_t size, void *data)
{
	struct got_arg *a = data;
	uintptr_t base = info->dlpi_addr;
	(void)size;
	if (base == a->skip_base[0] || base == a->skip_base[1])
		return 0;
	const ElfW(Dyn) *dyn = NULL;
	uintptr_t relro_lo = 0, relro_hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(base + ph->p_vaddr);
		else if (ph->p_type == PT_GNU_RELRO) {
			relro_lo = base + ph->p_vaddr;
			relro_hi = relro_lo + ph->p_memsz;
		}
	}
	if (!dyn)
		return 0;
	const ElfW(Sym) *symtab = NULL;
	const char *strtab = NULL;
	uintptr_t jmprel = 0, rela = 0;
	size_t pltrelsz = 0, relasz = 0;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		switch (dyn->d_tag) {
		case DT_SYMTAB:
			symtab = (const ElfW(Sym) *)kp_dyn_ptr(dyn->d_un.d_ptr,
							       base);
			break;
		case DT_STRTAB:
			strtab = (const char *)kp_dyn_ptr(dyn->d_un.d_ptr,
							  base);
			break;
		case DT_JMPREL:
			jmprel = kp_dyn_ptr(dyn->d_un.d_ptr, base);
			break;
		case DT_PLTRELSZ:
			pltrelsz = dyn->d_un.d_val;
			break;
		case DT_RELA:
			rela = kp_dyn_ptr(dyn->d_un.d_ptr, base);
			break;
		case DT_RELASZ:
			relasz = dyn->d_un.d_val;
			break;
		default:
			break;
		}
	}
	if (!symtab || !strtab)
		return 0;
	const uintptr_t tabs[2] = { jmprel, rela };
	const size_t sizes[2] = { pltrelsz, relasz };
	for (int t = 0; t < 2; t++) {
		const ElfW(Rela) *r = (const ElfW(Rela) *)tabs[t];
		for (size_t k = 0; r && k < sizes[t] / sizeof(*r); k++) {
			unsigned long type = ELF64_R_TYPE(r[k].r_info);
			if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
				continue;
			size_t si = ELF64_R_SYM(r[k].r_info);
			if (!si || strcmp(strtab + symtab[si].st_name, a->sym))
				continue;
			patch(base + r[k].r_offset, a->repl, relro_lo, relro_hi);
			a->n++;
		}
	}
	return 0;
}

int kp_got_hook(const char *symbol, void *replacement, void **real)
{
#if defined(__x86_64__)
	if (!symbol || !replacement)
		return -1;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	void *target = dlsym(RTLD_DEFAULT, symbol);
	struct got_arg a = { symbol, replacement, { 0, 0 }, 0 };
	Dl_info di;
	if (dladdr((void *)kp_got_hook, &di))
		a.skip_base[0] = (uintptr_t)di.dli_fbase;
	if (dladdr(replacement, &di))
		a.skip_base[1] = (uintptr_t)di.dli_fbase;
	/* dli_fbase is the ELF header; dlpi_addr the load bias: equal for
	 * shared objects (first PT_LOAD at vaddr 0) */
	if (target)
		dl_iterate_phdr(each_module, &a);
	kp_busy_restore(busy);
	if (real)
		*real = target;
	return target ? a.n : -1;
#else
	(void)symbol;
	(void)replacement;
	if (real)
		*real = NULL;
	return -1;
#endif
}
