/* SPDX-License-Identifier: MIT */
/*
 * The module map: every loaded ELF object's path, load bias, address span
 * and build-id, so the analyzer can symbolize offline. Scanned with
 * dl_iterate_phdr at start-up, and again before each stack not seen before
 * is interned, when the loader's load/unload counters show that something
 * was dlopened or dlclosed since. Scans run on app threads (as libunwind's own dl_iterate_phdr calls do); the writer
 * thread never calls into the loader, since a thread inside dlopen may be
 * waiting on the writer. dlopen itself is not interposed: glibc resolves a
 * bare name against its *caller's* RUNPATH and namespace, which a wrapper
 * would silently change.
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
