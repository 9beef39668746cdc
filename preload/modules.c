/* SPDX-License-Identifier: MIT */
/*
 * The module map: every loaded ELF object's path, load bias, address span
 * and build-id, so the analyzer can symbolize offline. Scanned with
 * dl_iterate_phdr at start-up, and again before each stack not seen before
 * is interned, when the loader's load/unload counters show that something
 * was dlopened or dlclosed since. Scans run on app threads (as libunwind's own dl_iterate_phdr calls do); the writer
 * thread never calls into the loader, since a thread inside dlopen may be
 * waiting on the writer. dlopen is not wrapped (but for RTLD_DEEPBIND
 * loads of a path, deepbind.c): glibc resolves a bare name against its
 * *caller's* RUNPATH and namespace, which a wrapper would silently change.
 *
 * Modules are kept in a list in the private arena; each change gets a
 * sequence number so the writer emits only what is new since its last look.
 */
#include "state.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct kp_module *head, *tail;
static uint64_t seq;
static _Atomic int lock;

void kp_modules_lock(void)
{
	kp_spin_lock(&lock);
}

void kp_modules_unlock(void)
{
	kp_spin_unlock(&lock);
}

struct found {
	uint64_t bias, lo, hi;
	char path[1024];
	uint8_t build_id[64];
	uint32_t build_id_len;
};

static void read_build_id(const struct dl_phdr_info *info, struct found *f)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const unsigned char *p =
			(const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
		const unsigned char *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
			const unsigned char *name = p + sizeof(*n);
			const unsigned char *desc =
				name + ((n->n_namesz + 3) & ~3u);
			if (desc + n->n_descsz > end)
				break;
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
			    memcmp(name, "GNU", 4) == 0 &&
			    n->n_descsz <= sizeof(f->build_id)) {
				memcpy(f->build_id, desc, n->n_descsz);
				f->build_id_len = n->n_descsz;
				return;
			}
			p = desc + ((n->n_descsz + 3) & ~3u);
		}
	}
}

struct scan {
	struct found *items;
	unsigned n, cap;
};

static int on_phdr(struct dl_phdr_info *info, size_t size, void *ctx)
{
	(void)size;
	struct scan *s = ctx;
	if (s->n == s->cap)
		return 1;
	struct found *f = &s->items[s->n];
	memset(f, 0, sizeof(*f));
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t a = info->dlpi_addr + ph->p_vaddr;
		if (a < lo)
			lo = a;
		if (a + ph->p_memsz > hi)
			hi = a + ph->p_memsz;
	}
	if (hi == 0)
		return 0;
	f->bias = info->dlpi_addr;
	f->lo = lo;
	f->hi = hi;
	const char *name = info->dlpi_name;
	if (!name || !*name) {
		/* The main program (the first object) has an empty name. */
		if (s->n == 0)
			kp_self_exe(f->path, sizeof(f->path));
	} else {
		size_t k = strlen(name);
		if (k >= sizeof(f->path))
			k = sizeof(f->path) - 1;
		memcpy(f->path, name, k);
	}
	read_build_id(info, f);
	s->n++;
	return 0;
}

static void add(const struct found *f)
{
	struct kp_module *m = kp_arena_alloc(sizeof(*m));
	if (!m)
		return;
	memset(m, 0, sizeof(*m));
	size_t k = strlen(f->path);
	m->path = kp_arena_alloc(k + 1);
	if (!m->path) {
		kp_arena_free(m);
		return;
	}
	memcpy(m->path, f->path, k + 1);
	m->bias = f->bias;
	m->lo = f->lo;
	m->hi = f->hi;
	memcpy(m->build_id, f->build_id, f->build_id_len);
	m->build_id_len = f->build_id_len;
	m->seq_add = ++seq;
	m->stacks_add = kp_stacktab_count();
	if (tail)
		tail->next = m;
	else
		head = m;
	tail = m;
}

static int read_gen(struct dl_phdr_info *info, size_t size, void *ctx)
{
	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) +
			    sizeof(info->dlpi_subs))
		*(unsigned long long *)ctx = info->dlpi_adds * 1000003ull +
					     info->dlpi_subs;
	return 1;
}

void kp_modules_scan(void)
{
	/* Code outside every module (JIT, anonymous maps) would ask for a
	 * scan on each new stack: skip it unless the loader's load/unload
	 * counters moved. */
	static unsigned long long last_gen = ~0ull;
	unsigned long long gen = 0;
	dl_iterate_phdr(read_gen, &gen);
	if (gen == last_gen && gen != 0)
		return;
	last_gen = gen;
	int saved = errno;
	enum { CAP = 1024 };
	struct scan s = { kp_arena_alloc(CAP * sizeof(struct found)), 0, CAP };
	if (!s.items)
		return;
	dl_iterate_phdr(on_phdr, &s);

	kp_modules_lock();
	for (struct kp_module *m = head; m; m = m->next) {
		if (m->seq_gone)
			continue;
		int present = 0;
		for (unsigned i = 0; i < s.n && !present; i++)
			present = s.items[i].bias == m->bias &&
				  s.items[i].lo == m->lo &&
				  strcmp(s.items[i].path, m->path) == 0;
		if (!present) {
			/* unwind rules of its code are void now */
			kp_unwind_flush();
			m->seq_gone = ++seq;
			m->stacks_gone = kp_stacktab_count();
		}
	}
	for (unsigned i = 0; i < s.n; i++) {
		int known = 0;
		for (struct kp_module *m = head; m && !known; m = m->next)
			known = !m->seq_gone && s.items[i].bias == m->bias &&
				s.items[i].lo == m->lo &&
				strcmp(s.items[i].path, m->path) == 0;
		if (!known)
			add(&s.items[i]);
	}
	/* libkprof.so's own span: its frames are cut from every stack. */
	uintptr_t self = (uintptr_t)&kp_modules_scan;
	for (struct kp_module *m = head; m; m = m->next)
		if (!m->seq_gone && self >= m->lo && self < m->hi) {
			kp.self_lo = m->lo;
			kp.self_hi = m->hi;
		}
	kp_modules_unlock();
	kp_arena_free(s.items);
	errno = saved;
}

unsigned kp_modules_known_prefix(const uint64_t *pcs, unsigned n)
{
	unsigned i = n ? 1 : 0;
	kp_modules_lock();
	for (; i < n; i++) {
		uint64_t pc = pcs[i] - 1; /* a return address: its call */
		int in = 0;
		for (struct kp_module *m = head; m && !in; m = m->next)
			in = !m->seq_gone && pc >= m->lo && pc < m->hi;
		if (!in)
			break;
	}
	kp_modules_unlock();
	return i;
}

unsigned kp_modules_changes(uint64_t *since, struct kp_module_change *out,
			    unsigned max)
{
	unsigned n = 0;
	for (struct kp_module *m = head; m; m = m->next)
		n += (m->seq_add > *since) + (m->seq_gone > *since);
	if (n > max)
		return n; /* the caller grows its buffer and asks again */
	n = 0;
	for (struct kp_module *m = head; m; m = m->next) {
		if (m->seq_add > *since)
			out[n++] = (struct kp_module_change){ m, m->seq_add,
							      m->stacks_add, 0 };
		if (m->seq_gone > *since)
			out[n++] = (struct kp_module_change){ m, m->seq_gone,
							      m->stacks_gone, 1 };
	}
	/* Oldest first (few entries: insertion sort). */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && out[j].seq < out[j - 1].seq; j--) {
			struct kp_module_change t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	if (n)
		*since = out[n - 1].seq;
	return n;
}

/* ---- whose malloc the app calls -------------------------------------------- */

static uint32_t gnu_hash(const char *s)
{
	uint32_t h = 5381;
	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h;
}

static uint32_t sysv_hash(const char *s)
{
	uint32_t h = 0;
	for (; *s; s++) {
		h = (h << 4) + (unsigned char)*s;
		h = (h ^ ((h >> 24) & 0xf0)) & 0x0fffffff;
	}
	return h;
}

/* Does the object define name itself (a function, in a section, in its
 * dynamic symbols)? Read from its mapped dynamic section with its hash
 * table, as the loader looks it up: no dlopen, which would run the
 * constructors of an object not yet initialised (this runs at kprof's
 * start, which may come during another library's constructor). An
 * undefined symbol with a value (a program's PLT entry that stands for
 * the function's address) is no definition. @return its address (an
 * IFUNC's resolver), NULL when it does not. */
void *kp_module_defines(const struct dl_phdr_info *info, const char *name)
{
	uintptr_t base = info->dlpi_addr;
	const ElfW(Dyn) *dyn = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(base +
						  info->dlpi_phdr[i].p_vaddr);
	if (!dyn)
		return NULL;
	const ElfW(Sym) *sym = NULL;
	const char *str = NULL;
	const uint32_t *gh = NULL, *h = NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t p = kp_dyn_ptr(dyn->d_un.d_ptr, base);
		if (dyn->d_tag == DT_SYMTAB)
			sym = (const ElfW(Sym) *)p;
		else if (dyn->d_tag == DT_STRTAB)
			str = (const char *)p;
		else if (dyn->d_tag == DT_GNU_HASH)
			gh = (const uint32_t *)p;
		else if (dyn->d_tag == DT_HASH)
			h = (const uint32_t *)p;
	}
	if (!sym || !str || (!gh && !h))
		return NULL;
	const ElfW(Sym) *found = NULL;
	if (gh) {
		uint32_t nbuckets = gh[0], symoff = gh[1], bloom_words = gh[2];
		const uint32_t *buckets =
			(const uint32_t *)((const ElfW(Addr) *)(gh + 4) +
					   bloom_words);
		const uint32_t *chain = buckets + nbuckets;
		uint32_t hv = gnu_hash(name);
		uint32_t i = nbuckets ? buckets[hv % nbuckets] : 0;
		for (; i >= symoff && i != 0; i++) {
			uint32_t ch = chain[i - symoff];
			if ((ch | 1) == (hv | 1) &&
			    !strcmp(str + sym[i].st_name, name)) {
				found = &sym[i];
				break;
			}
			if (ch & 1)
				break;
		}
	} else {
		uint32_t nbucket = h[0];
		const uint32_t *bucket = h + 2, *chain = bucket + nbucket;
		uint32_t i = nbucket ? bucket[sysv_hash(name) % nbucket] : 0;
		for (unsigned guard = 0; i && guard < h[1]; guard++) {
			if (!strcmp(str + sym[i].st_name, name)) {
				found = &sym[i];
				break;
			}
			i = chain[i];
		}
	}
	if (!found || found->st_shndx == SHN_UNDEF)
		return NULL;
	unsigned type = ELF64_ST_TYPE(found->st_info);
	if (type != STT_FUNC && type != STT_GNU_IFUNC)
		return NULL;
	return (void *)(base + found->st_value);
}

struct owner_walk {
	uintptr_t self; /* libkprof.so's base */
	char *owner;
	size_t n;
	int found;
};

static int owner_of(struct dl_phdr_info *info, size_t size, void *data)
{
	struct owner_walk *w = data;
	(void)size;
	if ((uintptr_t)info->dlpi_addr == w->self)
		return 1; /* kprof's own comes next: nothing before it */
	if (!kp_module_defines(info, "malloc"))
		return 0;
	if (info->dlpi_name[0]) {
		snprintf(w->owner, w->n, "%s", info->dlpi_name);
		w->found = 1;
	} else {
		kp_self_exe(w->owner, w->n); /* the program itself */
		w->found = 2;
	}
	return 1;
}

/*
 * The app's calls go to the first malloc in the lookup order: the
 * program's, then those of the libraries in LD_PRELOAD, in their order
 * (dl_iterate_phdr's order). When one of those comes before kprof's (an
 * allocator listed before libkprof.so, or a malloc the program defines
 * itself), the app's calls never reach kprof.
 */
int kp_modules_malloc_owner(char *owner, size_t n)
{
	Dl_info self;
	if (!dladdr((void *)owner_of, &self))
		return 0;
	struct owner_walk w = { (uintptr_t)self.dli_fbase, owner, n, 0 };
	dl_iterate_phdr(owner_of, &w);
	return w.found;
}
