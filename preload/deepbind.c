/* SPDX-License-Identifier: MIT */
/*
 * Modules loaded with RTLD_DEEPBIND. Such a module binds its symbols in
 * its own scope first (itself and its dependencies), so its calls to
 * libc's malloc and write, or to libsqlite3's sqlite3_step, went past
 * libkprof.so's, which comes first only in the global scope. PHP loads
 * every extension so: its PDO SQLite queries, and the allocations and
 * I/O of its extensions' own code, were neither recorded nor counted.
 *
 * dlopen is interposed for these loads alone. Every other call jumps on
 * to glibc's dlopen with the stack as it found it, so glibc still sees
 * its true caller, whose RUNPATH and namespace a bare name is looked up
 * with (tests/apps/dlopener.c) and whose $ORIGIN a '$' in the name
 * expands to. A DEEPBIND load of a path (a '/' and no '$') does not
 * depend on its caller and is made from here; then each module it
 * loaded has its GOT slots of kprof's symbols pointed at kprof's where
 * its own scope gives what kprof's call on to (got.c,
 * kp_got_rebind_deep). What the modules run while they load (their
 * constructors) comes before that and is not seen; a DEEPBIND load of a
 * bare name is not seen into. KOTOBA_PROFILE_DEEPBIND=0 leaves every load
 * to glibc (tests/bench/sqlite_points.py: an unhooked copy of a module).
 */
#include "state.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

/* glibc's dlopen (kp_dlopen_route's first call sets it). */
static void *(*real_dlopen)(const char *, int);

/* Called from the entry below (asm) only. */
__attribute__((visibility("hidden"))) void *kp_dlopen_route(const char *file,
							   int mode);
__attribute__((visibility("hidden"))) void *kp_dlopen_deep(const char *file,
							  int mode);

/* Where dlopen(file, mode) goes on to: kp_dlopen_deep for a DEEPBIND
 * load of a path, glibc's dlopen for every other. */
__attribute__((used, visibility("hidden"))) void *
kp_dlopen_route(const char *file, int mode)
{
	if (!real_dlopen)
		real_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT,
								  "dlopen");
	if ((mode & RTLD_DEEPBIND) && !(mode & RTLD_NOLOAD) && file &&
	    real_dlopen && kp_recording() && kp.cfg.deepbind &&
	    !kp_tls.busy && strchr(file, '/') && !strchr(file, '$'))
		return (void *)kp_dlopen_deep;
	return (void *)real_dlopen;
}

/*
 * dlopen(file, mode): asks kp_dlopen_route where to, with the arguments
 * kept, and jumps there: its return is to dlopen's caller, and glibc's
 * dlopen finds its caller's return address where the caller left it.
 */
__asm__(".text\n"
	".globl dlopen\n"
	".type dlopen, @function\n"
	"dlopen:\n"
	"	.cfi_startproc\n"
	"	endbr64\n"
	"	pushq %rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	pushq %rsi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	subq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	call kp_dlopen_route\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rsi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	jmp *%rax\n"
	"	.cfi_endproc\n"
	".size dlopen, .-dlopen\n");

/* The modules loaded before the call: their load biases. */
struct seen {
	uintptr_t *bias;
	size_t n, cap;
};

static int note(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct seen *s = arg;
	(void)size;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		uintptr_t *b = kp_arena_alloc(cap * sizeof(*b));
		if (!b)
			return 1;
		if (s->n)
			memcpy(b, s->bias, s->n * sizeof(*b));
		kp_arena_free(s->bias);
		s->bias = b;
		s->cap = cap;
	}
	s->bias[s->n++] = info->dlpi_addr;
	return 0;
}

/* The modules loaded since (not in before), to rebind once the loader
 * is left: dl_iterate_phdr holds a lock dlsym may want. (A load that
 * brings more than 64 modules leaves the rest as they bind.) */
struct fresh {
	const struct seen *before;
	uintptr_t self_bias;      /* libkprof.so's load bias ... */
	struct dl_phdr_info self; /* ... and its info, found here */
	struct dl_phdr_info mod[64];
	size_t n;
};

static int pick(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct fresh *f = arg;
	(void)size;
	if (info->dlpi_addr == f->self_bias)
		f->self = *info;
	for (size_t i = 0; i < f->before->n; i++)
		if (f->before->bias[i] == info->dlpi_addr)
			return 0;
	if (!info->dlpi_name || info->dlpi_name[0] != '/')
		return 0; /* no file: nothing to look its symbols up by */
	if (f->n < sizeof(f->mod) / sizeof(f->mod[0]))
		f->mod[f->n++] = *info;
	return 0;
}

__attribute__((used, visibility("hidden"))) void *
kp_dlopen_deep(const char *file, int mode)
{
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1; /* the loader's allocations here are not the app's */
	struct seen before = { 0 };
	dl_iterate_phdr(note, &before);
	kp_tls.busy = busy;
	void *h = real_dlopen(file, mode);
	if (!h) {
		kp_arena_free(before.bias);
		return NULL;
	}
	kp_tls.busy = 1;
	kp_real_resolve();
	struct fresh f = { .before = &before };
	Dl_info di;
	/* a shared object's load bias is its ELF header's address */
	if (dladdr((void *)kp_dlopen_deep, &di))
		f.self_bias = (uintptr_t)di.dli_fbase;
	dl_iterate_phdr(pick, &f);
	for (size_t i = 0; f.self.dlpi_phdr && i < f.n; i++) {
		void *mh = real_dlopen(f.mod[i].dlpi_name,
				       RTLD_LAZY | RTLD_NOLOAD);
		if (mh) {
			kp_got_rebind_deep(&f.mod[i], mh, &f.self);
			kp_real.dlclose(mh); /* not ours: nothing unloads */
		}
	}
	kp_arena_free(before.bias);
	dlerror(); /* the lookups' misses: the load succeeded */
	kp_tls.busy = busy;
	return h;
}
