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
 * constructors) comes before that and is not seen.
 *
 * A DEEPBIND load of a bare name is made from here when it finds what
 * glibc would find for the caller (bare_name): the object already
 * loaded by that name; else the file in the first of the caller's
 * search directories (dlinfo RTLD_DI_SERINFO: its RPATHs, LD_LIBRARY_PATH,
 * its RUNPATH, the default directories) that are not kprof's too and
 * holds one, by its path; else, when kprof's own directories before
 * those they share hold none either, the name (then both searches go on
 * alike: ld.so.cache, the rest). Otherwise, and for a caller in another
 * namespace or with glibc-hwcaps subdirectories on its way, glibc loads
 * it as the caller asked, unseen, and kprof says so once.
 * KOTOBA_PROFILE_DEEPBIND=0 leaves every load to glibc
 * (tests/bench/sqlite_points.py: an unhooked copy of a module).
 */
#include "state.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* glibc's dlopen (kp_dlopen_route's first call sets it). */
static void *(*real_dlopen)(const char *, int);

/* Called from the entry below (asm) only. */
__attribute__((visibility("hidden"))) void *
kp_dlopen_route(const char **file, int mode, const void *caller);
__attribute__((visibility("hidden"))) void *kp_dlopen_deep(const char *file,
							  int mode);
__attribute__((visibility("hidden"))) void *
kp_dlopen_deep_found(const char *file, int mode);

/* The search directories glibc's dlopen takes for a caller in object
 * lm (dlinfo RTLD_DI_SERINFO; those that exist), from kprof's arena;
 * NULL if not known. */
static Dl_serinfo *search_dirs(void *lm)
{
	Dl_serinfo size;
	if (dlinfo(lm, RTLD_DI_SERINFOSIZE, &size) != 0 ||
	    size.dls_size < sizeof(size))
		return NULL;
	Dl_serinfo *si = kp_arena_alloc(size.dls_size);
	if (!si)
		return NULL;
	*si = size;
	if (dlinfo(lm, RTLD_DI_SERINFOSIZE, si) != 0 ||
	    dlinfo(lm, RTLD_DI_SERINFO, si) != 0) {
		kp_arena_free(si);
		return NULL;
	}
	return si;
}

/* Is dir/name a file glibc would load here: an x86-64 ELF shared
 * object? (glibc passes over a file of another class or machine and
 * searches on.) 0 none, 1 yes, -1 something else (a directory of
 * glibc-hwcaps variants, which glibc looks in first). */
static int holds(const char *dir, const char *name, char *path, size_t cap)
{
	struct stat st;
	int n = snprintf(path, cap, "%s/glibc-hwcaps", dir);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	if (stat(path, &st) == 0)
		return -1;
	n = snprintf(path, cap, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	Elf64_Ehdr eh;
	ssize_t got = read(fd, &eh, sizeof(eh));
	close(fd);
	return got == (ssize_t)sizeof(eh) &&
	       !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	       eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_machine == EM_X86_64;
}

/* The first of dirs[0..n) that holds name (its path in path): 1; 0
 * none; -1 one that cannot be told. */
static int first_holder(const Dl_serinfo *si, uint32_t n, const char *name,
			char *path, size_t cap)
{
	for (uint32_t i = 0; i < n; i++) {
		int h = holds(si->dls_serpath[i].dls_name, name, path, cap);
		if (h != 0)
			return h;
	}
	return 0;
}

/*
 * What a DEEPBIND dlopen of the bare name file by caller (a return
 * address in the caller's object) finds, as a name kprof's own dlopen
 * finds the same by (see the top): file itself, or the path in buf.
 * NULL: not known.
 */
static const char *bare_name(const char *file, const void *caller, char *buf,
			     size_t cap)
{
	buf[0] = '\0';
	Dl_info di;
	void *lm = NULL, *self = NULL;
	Lmid_t ns = -1, self_ns = -1;
	if (!dladdr1(caller, &di, &lm, RTLD_DL_LINKMAP) || !lm ||
	    !dladdr1((void *)bare_name, &di, &self, RTLD_DL_LINKMAP) || !self ||
	    dlinfo(lm, RTLD_DI_LMID, &ns) != 0 ||
	    dlinfo(self, RTLD_DI_LMID, &self_ns) != 0 || ns != self_ns)
		return NULL;
	void *h = real_dlopen(file, RTLD_LAZY | RTLD_NOLOAD);
	if (h) { /* loaded: glibc matches names before it searches */
		kp_real.dlclose(h);
		return file;
	}
	Dl_serinfo *c = search_dirs(lm), *k = search_dirs(self);
	const char *found = NULL;
	if (c && k) {
		/* the directories both end with (the defaults, at least) */
		uint32_t nc = c->dls_cnt, nk = k->dls_cnt;
		while (nc && nk && !strcmp(c->dls_serpath[nc - 1].dls_name,
					   k->dls_serpath[nk - 1].dls_name)) {
			nc--;
			nk--;
		}
		int hc = first_holder(c, nc, file, buf, cap);
		if (hc > 0)
			found = buf;
		else if (hc == 0 && first_holder(k, nk, file, buf, cap) == 0)
			found = file;
	}
	kp_arena_free(c);
	kp_arena_free(k);
	dlerror(); /* the lookups' misses */
	return found;
}

/* kp_dlopen_deep of a path bare_name found, in kprof's arena. */
__attribute__((used, visibility("hidden"))) void *
kp_dlopen_deep_found(const char *file, int mode)
{
	void *h = kp_dlopen_deep(file, mode);
	kp_arena_free((void *)(uintptr_t)file); /* (glibc keeps a copy) */
	return h;
}

/* kp_dlopen_route for a bare name: where to, or NULL (glibc's dlopen). */
static __attribute__((noinline)) void *route_bare(const char **file,
						  const void *caller)
{
	static _Atomic int warned;
	char buf[PATH_MAX];
	const char *f = *file;
	kp_tls.busy = 1; /* the loader's allocations here are not the app's */
	const char *to = bare_name(f, caller, buf, sizeof(buf));
	char *path = to == buf ? kp_arena_alloc(strlen(buf) + 1) : NULL;
	if (path)
		strcpy(path, buf);
	kp_tls.busy = 0;
	if (to == f)
		return (void *)kp_dlopen_deep;
	if (path) {
		*file = path;
		return (void *)kp_dlopen_deep_found;
	}
	if (!atomic_exchange(&warned, 1))
		kp_warn("%s, loaded with RTLD_DEEPBIND by its bare name, is not "
			"seen into: kprof cannot tell where glibc finds it for "
			"its caller (its allocations, I/O and queries are not "
			"recorded)", f);
	return NULL;
}

/* Where dlopen(*file, mode) goes on to: kp_dlopen_deep for a DEEPBIND
 * load of a path, or of a bare name found as glibc would for caller
 * (kp_dlopen_deep_found when *file is now the path it was found at);
 * glibc's dlopen for every other. */
__attribute__((used, visibility("hidden"))) void *
kp_dlopen_route(const char **file, int mode, const void *caller)
{
	if (!real_dlopen)
		real_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT,
								  "dlopen");
	const char *f = *file;
	if (!(mode & RTLD_DEEPBIND) || (mode & RTLD_NOLOAD) || !f ||
	    !real_dlopen || !kp_recording() || !kp.cfg.deepbind ||
	    kp_tls.busy || strchr(f, '$'))
		return (void *)real_dlopen;
	if (strchr(f, '/'))
		return (void *)kp_dlopen_deep;
	void *to = route_bare(file, caller);
	return to ? to : (void *)real_dlopen;
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
	"	leaq 16(%rsp), %rdi\n"   /* &file, which the route may change */
	"	movq 24(%rsp), %rdx\n"   /* the caller: its return address */
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
