/* SPDX-License-Identifier: MIT */
/*
 * GOT slots rewritten. For query plugins (kprof.h's host->hook): rewrite the
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
 *
 * And for modules loaded with RTLD_DEEPBIND (deepbind.c): their slots of
 * kprof's own symbols, pointed at kprof's (kp_got_rebind_deep, below).
 */
#include "state.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* A module's dynamic section, as the walks over its GOT slots read it. */
struct dynmod {
	uintptr_t base, relro_lo, relro_hi;
	const ElfW(Sym) *symtab;
	const char *strtab;
	uintptr_t jmprel, rela;
	size_t pltrelsz, relasz;
	const ElfW(Half) *versym; /* NULL: no symbol versions */
	uintptr_t verneed;
	size_t verneednum;
};

static int dynmod_read(const struct dl_phdr_info *info, struct dynmod *m)
{
	memset(m, 0, sizeof(*m));
	m->base = info->dlpi_addr;
	const ElfW(Dyn) *dyn = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(m->base + ph->p_vaddr);
		else if (ph->p_type == PT_GNU_RELRO) {
			m->relro_lo = m->base + ph->p_vaddr;
			m->relro_hi = m->relro_lo + ph->p_memsz;
		}
	}
	if (!dyn)
		return -1;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t ptr = kp_dyn_ptr(dyn->d_un.d_ptr, m->base);
		switch (dyn->d_tag) {
		case DT_SYMTAB: m->symtab = (const ElfW(Sym) *)ptr; break;
		case DT_STRTAB: m->strtab = (const char *)ptr; break;
		case DT_JMPREL: m->jmprel = ptr; break;
		case DT_PLTRELSZ: m->pltrelsz = dyn->d_un.d_val; break;
		case DT_RELA: m->rela = ptr; break;
		case DT_RELASZ: m->relasz = dyn->d_un.d_val; break;
		case DT_VERSYM: m->versym = (const ElfW(Half) *)ptr; break;
		case DT_VERNEED: m->verneed = ptr; break;
		case DT_VERNEEDNUM: m->verneednum = dyn->d_un.d_val; break;
		default: break;
		}
	}
	return m->symtab && m->strtab ? 0 : -1;
}

/* Each GOT slot of m (JUMP_SLOT and GLOB_DAT relocations): fn(m, its
 * address, its symbol's index, arg). */
static void each_slot(const struct dynmod *m,
		      void (*fn)(const struct dynmod *, uintptr_t, size_t,
				 void *),
		      void *arg)
{
	const uintptr_t tabs[2] = { m->jmprel, m->rela };
	const size_t sizes[2] = { m->pltrelsz, m->relasz };
	for (int t = 0; t < 2; t++) {
		const ElfW(Rela) *r = (const ElfW(Rela) *)tabs[t];
		for (size_t k = 0; r && k < sizes[t] / sizeof(*r); k++) {
			unsigned long type = ELF64_R_TYPE(r[k].r_info);
			size_t si = ELF64_R_SYM(r[k].r_info);
			if ((type == R_X86_64_JUMP_SLOT ||
			     type == R_X86_64_GLOB_DAT) && si)
				fn(m, m->base + r[k].r_offset, si, arg);
		}
	}
}

struct got_arg {
	const char *sym;
	void *repl;
	uintptr_t skip_base[2];
	int n;
};

static void hook_slot(const struct dynmod *m, uintptr_t slot, size_t si,
		      void *arg)
{
	struct got_arg *a = arg;
	if (strcmp(m->strtab + m->symtab[si].st_name, a->sym) == 0) {
		patch(slot, a->repl, m->relro_lo, m->relro_hi);
		a->n++;
	}
}

static int each_module(struct dl_phdr_info *info, size_t size, void *data)
{
	struct got_arg *a = data;
	struct dynmod m;
	(void)size;
	if (info->dlpi_addr == a->skip_base[0] ||
	    info->dlpi_addr == a->skip_base[1] || dynmod_read(info, &m) != 0)
		return 0;
	each_slot(&m, hook_slot, a);
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

/*
 * A module loaded with RTLD_DEEPBIND (deepbind.c) binds each symbol in its
 * own scope first (itself and its dependencies), so its calls to libc's
 * malloc or write, or to libsqlite3's sqlite3_step, skip libkprof.so's,
 * which comes first only in the global scope. Each of its GOT slots for
 * a symbol of libkprof.so's is pointed at libkprof.so's definition when
 * the module's scope gives the function that definition calls on to
 * (dlsym(RTLD_NEXT): libc's malloc, the one libsqlite3): the call ends
 * in the same function, recorded on its way. Not when the module's scope
 * gives another (its own malloc, another SQLite: their calls stay as
 * they are, unseen), nor when the program itself (or a library preloaded
 * before kprof) defines the symbol, which then comes before kprof's for
 * every module. SQLite's functions found nowhere after libkprof.so (a
 * libsqlite3 in no global scope) are pointed at kprof's too: its hook
 * hands each call to the library the caller's own scope gives
 * (hook_sqlite.c, sq_callee). Symbol versions are kept: a slot asking for
 * one is compared with that version of the function.
 */
struct deep_arg {
	void *h;      /* the module's handle: dlsym searches its own scope */
	const struct dl_phdr_info *self; /* libkprof.so's */
	int n;
	const char *other;  /* the first symbol its scope binds elsewhere */
	void *other_def;
	int nother;
};

/* The version an undefined symbol of m asks for, NULL for none. */
static const char *need_version(const struct dynmod *m, size_t si)
{
	if (!m->versym || !m->verneed)
		return NULL;
	ElfW(Half) v = m->versym[si] & 0x7fff;
	if (v <= 1)
		return NULL; /* local or global: no version */
	const char *p = (const char *)m->verneed;
	for (size_t i = 0; i < m->verneednum; i++) {
		const ElfW(Verneed) *vn = (const ElfW(Verneed) *)p;
		const char *q = p + vn->vn_aux;
		for (unsigned j = 0; j < vn->vn_cnt; j++) {
			const ElfW(Vernaux) *a = (const ElfW(Vernaux) *)q;
			if (a->vna_other == v)
				return m->strtab + a->vna_name;
			q += a->vna_next;
		}
		p += vn->vn_next;
	}
	return NULL;
}

static void deep_slot(const struct dynmod *m, uintptr_t slot, size_t si,
		      void *arg)
{
	struct deep_arg *a = arg;
	const ElfW(Sym) *sym = &m->symtab[si];
	if (sym->st_shndx != SHN_UNDEF)
		return; /* the module's own: its scope binds it to itself */
	const char *name = m->strtab + sym->st_name;
	void *own = kp_module_defines(a->self, name);
	if (!own || dlsym(RTLD_DEFAULT, name) != own)
		return;
	const char *ver = need_version(m, si);
	void *deep = ver ? dlvsym(a->h, name, ver) : dlsym(a->h, name);
	if (!deep || deep == own)
		return; /* bound in the global scope, to kprof's */
	void *next = ver ? dlvsym(RTLD_NEXT, name, ver) :
			   dlsym(RTLD_NEXT, name);
	if (deep != next && (next || strncmp(name, "sqlite3_", 8) != 0)) {
		if (!a->nother++) {
			a->other = name;
			a->other_def = deep;
		}
		return;
	}
	if (*(void **)slot != own) {
		patch(slot, own, m->relro_lo, m->relro_hi);
		a->n++;
	}
}

int kp_got_rebind_deep(const struct dl_phdr_info *info, void *h,
		       const struct dl_phdr_info *self)
{
#if defined(__x86_64__)
	struct dynmod m;
	struct deep_arg a = { h, self, 0, NULL, NULL, 0 };
	if (dynmod_read(info, &m) == 0)
		each_slot(&m, deep_slot, &a);
	if (a.nother) {
		Dl_info di;
		const char *where = dladdr(a.other_def, &di) && di.dli_fname ?
					    di.dli_fname :
					    "?";
		kp_warn("%s (loaded with RTLD_DEEPBIND) calls %s of %s, not "
			"the one kprof records: its calls to %s%s are not "
			"recorded", info->dlpi_name, a.other, where, a.other,
			a.nother > 1 ? " and other functions" : "");
	}
	return a.n;
#else
	(void)info;
	(void)h;
	(void)self;
	return 0;
#endif
}
