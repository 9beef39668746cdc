/* SPDX-License-Identifier: MIT */
/*
 * kprof's own memory: a small private allocator on mmap, so nothing kprof
 * allocates comes from (or shows up in) the app's heap.
 *
 * Why not a private jemalloc arena: Debian's libjemalloc.so.2 needs
 * libstdc++.so.6, so linking it would load libstdc++ into every traced
 * process, and libstdc++'s static initialiser allocates 72,704 bytes (its
 * exception emergency pool) from the *app's* malloc: a kprof artefact in
 * every C program's heap and report. kprof's allocations are few and
 * mostly large (zstd workspaces, frame buffers), so a simple allocator does:
 *   - blocks up to 64 KiB come from power-of-two size classes, each a LIFO
 *     free list, and past its end a 256 KiB chunk cut one block at a time
 *     (so a chunk's pages are touched as its blocks are first used, not
 *     all at once: start-up faulted in ~3 MB that way), under one spin
 *     lock;
 *   - larger blocks are their own mapping, unmapped on free.
 * Every block has a 16-byte header naming its class (or mapping length).
 * The lock is taken around fork (kp_arena_lock/unlock) like kprof's others.
 *
 * Every mapping kprof makes for itself is also noted in a small table
 * (kp_own_note), so that the leak scan (leakscan.c) can leave kprof's
 * memory out of the roots it reads: kprof's tables hold the app's
 * pointers (its rings' events, the SQLite hook's statements), and would
 * make every block they name look reachable.
 */
#include "state.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#define HDR 16
#define MIN_SHIFT 4  /* 16 bytes */
#define MAX_SHIFT 16 /* 64 KiB */
#define NCLASS (MAX_SHIFT - MIN_SHIFT + 1)
#define CHUNK (256 * 1024)
#define LARGE_TAG 0xffffffffu

struct hdr {
	uint32_t cls;  /* size class, or LARGE_TAG */
	uint32_t pad;
	uint64_t len;  /* mapping length for large blocks */
};
_Static_assert(sizeof(struct hdr) == HDR, "header keeps 16-byte alignment");

struct free_blk {
	struct free_blk *next;
};

static struct free_blk *free_list[NCLASS];
/* The rest of each class's current chunk: [next, end). */
static char *chunk_next[NCLASS], *chunk_end[NCLASS];
static _Atomic int lock;

/* ---- kprof's own mappings ------------------------------------------------ */

#define OWN_MAX 2048
static struct kp_span own[OWN_MAX];
static unsigned nown;
static int own_full; /* a mapping was not noted: the table is not whole */
static _Atomic int own_lock;

void kp_own_note(void *p, size_t len)
{
	kp_spin_lock(&own_lock);
	if (nown < OWN_MAX)
		own[nown++] = (struct kp_span){ (uintptr_t)p,
						(uintptr_t)p + len };
	else
		own_full = 1;
	kp_spin_unlock(&own_lock);
}

void kp_own_forget(void *p)
{
	kp_spin_lock(&own_lock);
	for (unsigned i = 0; i < nown; i++)
		if (own[i].lo == (uintptr_t)p) {
			own[i] = own[--nown];
			break;
		}
	kp_spin_unlock(&own_lock);
}

size_t kp_own_spans(struct kp_span *out, size_t max)
{
	size_t n = (size_t)-1;
	kp_spin_lock(&own_lock);
	if (!own_full && nown <= max) {
		memcpy(out, own, nown * sizeof(*own));
		n = nown;
	}
	kp_spin_unlock(&own_lock);
	return n;
}

void kp_arena_lock(void)
{
	kp_spin_lock(&lock);
}

void kp_arena_unlock(void)
{
	kp_spin_unlock(&lock);
}

void *kp_own_map(size_t len, int noreserve)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS |
			       (noreserve ? MAP_NORESERVE : 0),
		       -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	kp_own_note(p, len);
	return p;
}

static void *map(size_t len)
{
	return kp_own_map(len, 0);
}

void *kp_map_noreserve(size_t len)
{
	return kp_own_map(len, 1);
}

/* A block of class c from its chunk, mapping a fresh chunk when that is
 * used up (lock held). NULL when out of memory. */
static struct free_blk *carve(unsigned c)
{
	size_t bsz = ((size_t)1 << (c + MIN_SHIFT)) + HDR;
	if ((size_t)(chunk_end[c] - chunk_next[c]) < bsz) {
		size_t n = CHUNK / bsz;
		char *chunk = map(n * bsz);
		if (!chunk)
			return NULL;
		chunk_next[c] = chunk;
		chunk_end[c] = chunk + n * bsz;
	}
	struct hdr *h = (struct hdr *)chunk_next[c];
	chunk_next[c] += bsz;
	h->cls = c;
	return (struct free_blk *)(h + 1);
}

void *kp_arena_alloc(size_t n)
{
	if (n > ((size_t)1 << MAX_SHIFT)) {
		size_t len = (n + HDR + 4095) & ~(size_t)4095;
		struct hdr *h = map(len);
		if (!h)
			return NULL;
		h->cls = LARGE_TAG;
		h->len = len;
		return h + 1;
	}
	unsigned c = 0;
	while (((size_t)1 << (c + MIN_SHIFT)) < n)
		c++;
	kp_arena_lock();
	struct free_blk *b = free_list[c];
	if (b)
		free_list[c] = b->next;
	else
		b = carve(c);
	kp_arena_unlock();
	return b;
}

void kp_arena_free(void *p)
{
	if (!p)
		return;
	struct hdr *h = (struct hdr *)p - 1;
	if (h->cls == LARGE_TAG) {
		kp_own_forget(h);
		munmap(h, h->len);
		return;
	}
	struct free_blk *b = p;
	kp_arena_lock();
	b->next = free_list[h->cls];
	free_list[h->cls] = b;
	kp_arena_unlock();
}

static void *xmalloc(void *ctx, size_t n)
{
	(void)ctx;
	return kp_arena_alloc(n);
}

static void xfree(void *ctx, void *p)
{
	(void)ctx;
	kp_arena_free(p);
}

int kp_arena_init(struct kp_allocator *a)
{
	a->xMalloc = xmalloc;
	a->xFree = xfree;
	a->ctx = NULL;
	return 0;
}
