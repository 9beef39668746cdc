/* SPDX-License-Identifier: MIT */
/*
 * The leak scan (KOTOBA_PROFILE_LEAK_SCAN=1): at the process's exit, which
 * of the blocks still in use can the program no longer reach? valgrind's
 * memcheck answers that at the end of every run; kprof, which does not
 * own the allocator, answers it so:
 *
 *   1. the blocks in use: every event so far is written out, then the
 *      trace is read back (lib/'s reader) into a table of live pointers.
 *      Nothing is kept while the program runs: the scan costs nothing
 *      until exit, and then time in proportion to the trace's events and
 *      the memory read;
 *   2. the roots: the process's writable private mappings (/proc/self/maps)
 *      but the allocator's heaps (the pages of each block, glibc's
 *      arenas: scan_around_blocks), kprof's own memory (its rings and
 *      tables hold the app's pointers: arena.c notes them), libkprof.so's
 *      data, the stacks (below their descriptors) of threads that are
 *      gone and of kprof's writer, and the exiting thread's stack below
 *      where kprof was entered; plus that thread's registers there, and
 *      the blocks the C library allocated for kprof's own calls (below).
 *      Pages never touched are skipped (mincore), but where swap could
 *      hold them;
 *   3. every aligned word of the roots that points into a block marks it,
 *      then the marked blocks are read in turn (a worklist): a block a
 *      chain of pointers to block starts leads to is reachable; one that
 *      only chains with a pointer into a block's middle lead to is
 *      possibly lost. Of the rest, each one no other leads to is
 *      definitely lost and what it leads to indirectly lost (a lost cycle
 *      has one definitely lost member: valgrind's rule);
 *   4. a LEAK record for each block not reachable, then a LEAK_SCAN with
 *      the sums (record.h); kprof-analyze classifies the leak groups.
 *
 * Memory is read with process_vm_readv, which fails where a plain read
 * would fault (a mapping another thread just unmapped, a file mapping past
 * its end), so the scan cannot crash the program. Other threads still
 * running at exit are not stopped: a pointer held only in their registers
 * is not seen (their stacks are read). Everything here comes from kprof's
 * own memory (noted, so not scanned).
 */
#include "state.h"
#include "err.h"
#include "kpz.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- blocks kprof's own calls made ---------------------------------------- */

/*
 * While kprof runs (kp_tls.busy), the app's malloc serves the libraries it
 * calls unrecorded: dlsym, when kprof hooks a library the app loaded, adds
 * to libkprof.so's list of dependencies, a block of glibc's that holds a
 * pointer to the app's. Such blocks are not in the trace, so nothing would
 * lead into them: what only they point to would look lost. With the scan
 * asked for, the interposers' busy paths note them here (appended without
 * a lock, forgotten by zeroing: fork-safe), and the scan reads those still
 * allocated as roots.
 */
#define SIDE_MAX 16384
static struct side {
	_Atomic uint64_t ptr;
	uint64_t size, mono; /* mono: CLOCK_MONOTONIC ns, as the table's */
} side[SIDE_MAX];
static _Atomic unsigned nside;
int kp_side_on;

void kp_side_note(void *p, size_t n)
{
	if (!p)
		return;
	unsigned i = atomic_fetch_add_explicit(&nside, 1, memory_order_relaxed);
	if (i >= SIDE_MAX)
		return; /* the scan says it cannot know (nside) */
	side[i].size = n;
	side[i].mono = kp_mono_ns();
	atomic_store_explicit(&side[i].ptr, (uintptr_t)p, memory_order_release);
}

void kp_side_forget(void *p)
{
	unsigned n = atomic_load_explicit(&nside, memory_order_relaxed);
	for (unsigned i = n < SIDE_MAX ? n : SIDE_MAX; i-- > 0;) {
		uint64_t want = (uintptr_t)p;
		if (atomic_compare_exchange_strong(&side[i].ptr, &want, 0))
			return;
	}
}

/* ---- a fork child's ancestors -------------------------------------------- */

/*
 * A fork child starts with its parent's heap, whose blocks its own trace
 * does not hold (analysed on its own, a block only an inherited one points
 * to would look lost). So with the scan asked for, the child keeps the
 * path of its parent's trace and the time just before the fork (taken in
 * the parent's fork handler: the parent's events before it made the heap
 * the child copied, but for another thread's in the microseconds to the
 * fork), and the parent's writer thread, whose stack the child has a copy
 * of; a grandchild keeps both generations. Its scan reads those traces up
 * to their forks, then its own. The parent writes what came before the
 * fork within its flush interval, which the scan waits out if the child
 * ends sooner; a trace gone by then is LOST.
 */
#define CHAIN_MAX 4
#define ANCESTOR_MAX (16ull << 20) /* bytes of an ancestor's trace read */
static struct ancestor {
	char path[1200];  /* its trace */
	uint64_t cut;     /* CLOCK_MONOTONIC ns just before the fork */
	uintptr_t writer; /* its writer thread's pthread_self(), or 0 */
} chain[CHAIN_MAX];
static unsigned nchain;
static int chain_lost; /* deeper than CHAIN_MAX, or a fork not seen */
static uint64_t fork_cut;

void kp_leak_fork_prepare(void)
{
	if (kp_side_on)
		fork_cut = kp_mono_ns();
}

void kp_leak_fork_child(const char *path, uintptr_t writer)
{
	if (!kp_side_on)
		return;
	if (nchain >= CHAIN_MAX || !path[0] || !fork_cut) {
		chain_lost = 1;
		return;
	}
	struct ancestor *a = &chain[nchain++];
	size_t n = strlen(path);
	if (n >= sizeof(a->path)) {
		chain_lost = 1;
		return;
	}
	memcpy(a->path, path, n + 1);
	a->cut = fork_cut;
	a->writer = writer;
	fork_cut = 0;
}

/* ---- 1. the blocks in use, from the trace ---------------------------------- */

/*
 * One pointer: a block in use (at > 0: its ALLOC's time + 1), or a FREE
 * met before the ALLOC it frees (at = 0, ft its time + 1). The trace's
 * frames go thread by thread, so thread B's FREE of a block can come
 * before thread A's ALLOC of it; times decide, not the order read.
 */
struct ent {
	uint64_t ptr, size, at, ft;
};

struct tab {
	struct ent *e;
	size_t cap, n; /* cap a power of two */
	unsigned shift;
	int nomem;
};

static size_t home(const struct tab *t, uint64_t ptr)
{
	return (size_t)((ptr * 0x9e3779b97f4a7c15ull) >> t->shift);
}

/* The slot of ptr, or the empty one where it would go (*found 0). */
static size_t tab_find(const struct tab *t, uint64_t ptr, int *found)
{
	size_t i = home(t, ptr), m = t->cap - 1;
	while (t->e[i].ptr && t->e[i].ptr != ptr)
		i = (i + 1) & m;
	*found = t->e[i].ptr == ptr;
	return i;
}

static int tab_grow(struct tab *t)
{
	size_t cap = t->cap ? 2 * t->cap : 4096;
	struct ent *e = kp_arena_alloc(cap * sizeof(*e));
	if (!e)
		return -1;
	memset(e, 0, cap * sizeof(*e));
	struct tab n = { e, cap, 0, (unsigned)(64 - __builtin_ctzll(cap)), 0 };
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].ptr) {
			int f;
			n.e[tab_find(&n, t->e[i].ptr, &f)] = t->e[i];
			n.n++;
		}
	kp_arena_free(t->e);
	*t = n;
	return 0;
}

/* Linear probing's delete: later members of the probe run move up. */
static void tab_del(struct tab *t, size_t i)
{
	size_t m = t->cap - 1, j = i;
	for (;;) {
		j = (j + 1) & m;
		if (!t->e[j].ptr)
			break;
		size_t h = home(t, t->e[j].ptr);
		if (((j - h) & m) >= ((j - i) & m)) {
			t->e[i] = t->e[j];
			i = j;
		}
	}
	t->e[i].ptr = 0;
	t->n--;
}

/* The slot for ptr, made if new (*found 0); (size_t)-1 out of memory. */
static size_t tab_take(struct tab *t, uint64_t ptr, int *found)
{
	if ((t->n + 1) * 4 > t->cap * 3 && tab_grow(t) != 0) {
		t->nomem = 1;
		return (size_t)-1;
	}
	size_t i = tab_find(t, ptr, found);
	if (!*found) {
		t->e[i] = (struct ent){ ptr, 0, 0, 0 };
		t->n++;
	}
	return i;
}

static void on_alloc(struct tab *t, uint64_t ptr, uint64_t size, uint64_t ts)
{
	int found;
	size_t i = ptr ? tab_take(t, ptr, &found) : (size_t)-1;
	if (i == (size_t)-1)
		return;
	struct ent *e = &t->e[i];
	if (!found || (e->at == 0 && ts + 1 > e->ft) || ts + 1 >= e->at) {
		/* new; past the FREE met first; or a later incarnation */
		e->at = ts + 1;
		e->size = size;
		e->ft = 0;
	} else if (e->at == 0) {
		tab_del(t, i); /* the FREE met first freed this one */
	}
	/* else an earlier incarnation, freed before the one in place */
}

static void on_free(struct tab *t, uint64_t ptr, uint64_t ts)
{
	int found;
	size_t i = ptr ? tab_take(t, ptr, &found) : (size_t)-1;
	if (i == (size_t)-1)
		return;
	struct ent *e = &t->e[i];
	if (!found || e->at == 0) {
		if (ts + 1 > e->ft)
			e->ft = ts + 1; /* its ALLOC may come yet */
	} else if (e->at <= ts + 1) {
		tab_del(t, i);
	}
	/* else the FREE of an earlier incarnation */
}

static void on_event(struct tab *t, unsigned type, uint64_t ts, uint64_t a,
		     uint64_t b, uint64_t c, uint64_t d)
{
	switch (type) {
	case KP_REC_ALLOC:
		on_alloc(t, a, b, ts);
		break;
	case KP_REC_FREE:
		on_free(t, a, ts);
		break;
	case KP_REC_REALLOC: /* the old freed at ts, the new at ts + dur */
		on_free(t, a, ts);
		on_alloc(t, b, c, ts + d);
		break;
	default:
		break;
	}
}

static long read_fd(void *ctx, void *buf, size_t n)
{
	long r;
	do
		r = syscall(SYS_read, *(int *)ctx, buf, n);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* The blocks in use as the trace on fd says, from its events before
 * `until` (CLOCK_MONOTONIC ns; the table's times are that clock's, so
 * that traces of a fork's parent and child go in one table). @return 0,
 * or -1 when the trace does not read back whole (t->nomem: out of
 * memory). */
static int read_trace(int fd, struct tab *t, uint64_t until,
		      uint64_t *last)
{
	struct kp_source src = { read_fd, &fd };
	struct kp_reader *r;
	if (kp_reader_open(&r, &kp.alloc, &src) != 0)
		return -1;
	uint64_t t0 = kp_reader_header(r)->start_mono_ns;
	struct kp_mem_rec m[128];
	struct kp_rec rec;
	int rc;
	for (;;) {
		size_t n = kp_reader_mem(r, m, 128);
		for (size_t i = 0; i < n; i++)
			if (t0 + m[i].ts < until)
				on_event(t, m[i].type, t0 + m[i].ts, m[i].a,
					 m[i].b, m[i].c, m[i].d);
		if (n)
			continue;
		rc = kp_reader_next(r, &rec);
		if (rc <= 0)
			break;
		if (last && (t0 + rec.ts > *last || rec.type == KP_REC_END))
			*last = rec.type == KP_REC_END ? UINT64_MAX
						       : t0 + rec.ts;
		/* frames come in time order (but for an event whose thread
		 * was preempted before publishing it): an ancestor's trace,
		 * which goes on growing while it runs, is read up to a
		 * second past the fork, not to its end (in a fork storm each
		 * child read its parent's busy trace whole: minutes) */
		if (rec.type == KP_REC_FRAME && until != UINT64_MAX &&
		    t0 + rec.ts > until + 1000000000ull)
			break;
		if (t0 + rec.ts >= until)
			continue;
		if (rec.type == KP_REC_ALLOC)
			on_event(t, rec.type, t0 + rec.ts, rec.u.alloc.ptr,
				 rec.u.alloc.size, 0, 0);
		else if (rec.type == KP_REC_FREE)
			on_event(t, rec.type, t0 + rec.ts, rec.u.free.ptr, 0,
				 0, 0);
		else if (rec.type == KP_REC_REALLOC)
			on_event(t, rec.type, t0 + rec.ts,
				 rec.u.realloc.old_ptr, rec.u.realloc.new_ptr,
				 rec.u.realloc.size, rec.u.realloc.dur);
	}
	kp_reader_free(r);
	/* a frame the writer thread is writing now, cut short: what came
	 * before it is whole, and the program has recorded nothing since */
	return (rc == 0 || rc == KP_ETRUNC) && !t->nomem ? 0 : -1;
}

/* The ancestors' blocks, before their forks, into t. @return 0, or why
 * not (enum kp_leak_scan_status). */
static int read_ancestors(struct tab *t)
{
	if (chain_lost)
		return KP_LS_FORKED;
	/* the parent's events before the fork written: within its flush
	 * interval (twice, and a margin), unless it has ended */
	if (nchain && syscall(SYS_getppid) == kp.ppid) {
		uint64_t ready = chain[nchain - 1].cut +
				 2 * (uint64_t)kp.cfg.flush_ms * 1000000 +
				 20000000;
		for (uint64_t now; (now = kp_mono_ns()) < ready;) {
			struct timespec ts = { 0, (long)(ready - now) };
			syscall(SYS_nanosleep, &ts, NULL);
		}
	}
	for (unsigned k = 0; k < nchain; k++) {
		long fd = syscall(SYS_open, chain[k].path,
				  O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return KP_LS_LOST;
		/* every child reads it: a busy parent's (a fork storm's,
		 * 40 children of one whose threads allocate at full speed:
		 * minutes) is not read past ANCESTOR_MAX */
		struct stat st;
		if (syscall(SYS_fstat, fd, &st) != 0 ||
		    (uint64_t)st.st_size > ANCESTOR_MAX) {
			syscall(SYS_close, fd);
			return KP_LS_LOST;
		}
		uint64_t last = 0;
		int rc = read_trace((int)fd, t, chain[k].cut, &last);
		syscall(SYS_close, fd);
		if (rc != 0)
			return t->nomem ? KP_LS_NOMEM : KP_LS_LOST;
		/* nothing written since the fork (a writer far behind, or
		 * idle for long): what came before may be missing */
		if (last < chain[k].cut)
			return KP_LS_LOST;
	}
	return KP_LS_DONE;
}

/* ---- the blocks, sorted ---------------------------------------------------- */

enum { ST_NONE, ST_INTERIOR, ST_START, ST_LEADER, ST_INDIRECT };

struct blk {
	uint64_t lo, hi; /* [lo, hi): hi clipped at the next block's lo */
};

struct scan {
	struct blk *b;
	uint8_t *st;
	uint32_t *work;     /* worklist: at most two pushes a block */
	size_t n, nwork;
	uint64_t lo, hi;    /* of all blocks */
	pid_t pid;
	int noread;         /* process_vm_readv refused */
	int glibc;          /* the allocator is glibc's (no other's) */
	uint64_t root_bytes;
	uint64_t *buf;      /* BUF bytes, for what is read */
	uint64_t *win;      /* WIN bytes: a window of blocks, */
	uint64_t wlo, whi;  /* [wlo, whi) as read (block_words) */
	/* kept out of the roots, sorted: kprof's own mappings, and
	 * libkprof.so's writable segments (self_segments) */
	struct kp_span ex[2048 + 64];
	size_t nex;
};

#define BUF (64u << 10)

/* Sort by lo: a radix sort, 16 bits a pass (three for the addresses of
 * user space), into tmp and back; no allocation of the app's (its qsort
 * may call its malloc). A heap sort took a quarter of the scan of a
 * million blocks. @return the sorted array: a or tmp. */
static struct blk *sort_blocks(struct blk *a, struct blk *tmp, size_t n,
			       uint32_t *count)
{
	uint64_t max = 0;
	for (size_t i = 0; i < n; i++)
		max |= a[i].lo;
	for (unsigned sh = 0; sh < 64 && (max >> sh); sh += 16) {
		memset(count, 0, 65536 * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[a[i].lo >> sh & 0xffff]++;
		uint32_t at = 0;
		for (size_t d = 0; d < 65536; d++) {
			uint32_t c = count[d];
			count[d] = at;
			at += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[count[a[i].lo >> sh & 0xffff]++] = a[i];
		struct blk *x = a;
		a = tmp;
		tmp = x;
	}
	return a;
}

/* The block holding address w, or -1. */
static KP_ALWAYS_INLINE long find(const struct scan *s, uint64_t w)
{
	if (w - s->lo >= s->hi - s->lo)
		return -1;
	size_t l = 0, r = s->n; /* the last block with lo <= w is l - 1 */
	while (l < r) {
		size_t m = (l + r) / 2;
		if (s->b[m].lo <= w)
			l = m + 1;
		else
			r = m;
	}
	return l && w < s->b[l - 1].hi ? (long)(l - 1) : -1;
}

/* The first block at or past address lo. */
static size_t first_from(const struct scan *s, uint64_t lo)
{
	size_t l = 0, r = s->n;
	while (l < r) {
		size_t m = (l + r) / 2;
		if (s->b[m].lo < lo)
			l = m + 1;
		else
			r = m;
	}
	return l;
}

/* ---- 3. reading memory and marking ------------------------------------------ */

/* n bytes at src into dst. @return the bytes read (a prefix), 0 when the
 * first page cannot be read; sets s->noread when the call is refused. */
static size_t vm_read(struct scan *s, void *dst, uint64_t src, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)src, n };
	long got = syscall(SYS_process_vm_readv, s->pid, &l, 1, &r, 1, 0);
	if (got < 0 && errno != EFAULT && errno != ENOMEM)
		s->noread = 1;
	return got > 0 ? (size_t)got : 0;
}

/*
 * Is w, in block i but not at its start, the header of glibc's next chunk?
 * A block of n bytes is the user part of a chunk of n + 8 rounded up to
 * 16 (at least 32), 16 bytes past the chunk's start, and its last bytes
 * may be the next chunk's first field: the pointers glibc keeps to a free
 * chunk (its bins, the top chunk) point into the block before it, and
 * would make that block, lost, look possibly lost.
 */
static KP_ALWAYS_INLINE int next_chunk(const struct scan *s, long i,
				       uint64_t w)
{
	uint64_t n = s->b[i].hi - s->b[i].lo;
	uint64_t chunk = (n + 8 + 15) & ~15ull;
	return s->glibc && (w & 15) == 0 &&
	       w - s->b[i].lo == (chunk < 32 ? 32 : chunk) - 16;
}

/* Mark the block w points into, from a block of state from (or a root,
 * ST_START): a pointer to its start passes from's state on, any other
 * pointer ST_INTERIOR at most. */
static KP_ALWAYS_INLINE void mark(struct scan *s, uint64_t w, uint8_t from)
{
	long i = find(s, w);
	if (i < 0 || (w != s->b[i].lo && next_chunk(s, i, w)))
		return;
	uint8_t want = w == s->b[i].lo ? from : ST_INTERIOR;
	if (s->st[i] < want) {
		s->st[i] = want;
		s->work[s->nwork++] = (uint32_t)i;
	}
}

/* The words of [lo, hi) (lo 8-aligned), as fn sees them, read a buffer at
 * a time; what cannot be read is skipped a page at a time. */
static void each_word(struct scan *s, uint64_t lo, uint64_t hi,
		      void (*fn)(struct scan *, uint64_t, uintptr_t),
		      uintptr_t arg)
{
	while (lo < hi && !s->noread) {
		size_t want = hi - lo < BUF ? (size_t)(hi - lo) : BUF;
		size_t got = vm_read(s, s->buf, lo, want);
		for (size_t k = 0; k < got / 8; k++)
			fn(s, s->buf[k], arg);
		if (got == want) {
			lo += want;
			continue;
		}
		/* past what was read: on at the next page */
		lo = ((lo + got) | 4095) + 1;
	}
}

static void root_word(struct scan *s, uint64_t w, uintptr_t arg)
{
	(void)arg;
	mark(s, w, ST_START);
}

static void block_word(struct scan *s, uint64_t w, uintptr_t from)
{
	mark(s, w, (uint8_t)from);
}

/*
 * The words of block i, from a window of memory read WIN bytes at a
 * time: a program's blocks are mostly small and its neighbours in memory
 * come next often (the lost ones go in address order), where a call each
 * took a million lost blocks two seconds. Larger windows cost the blocks
 * taken in no order (the worklist's) more than they save: 64 KiB doubled
 * the scan of cc1. NULL when the window cannot hold it or be read
 * (each_word then reads it page by page).
 */
#define WIN (8u << 10)
static const uint64_t *block_words(struct scan *s, uint32_t i, size_t len)
{
	uint64_t lo = s->b[i].lo;
	if (lo >= s->wlo && lo + len <= s->whi)
		return (const uint64_t *)((const char *)s->win + (lo - s->wlo));
	if (len > WIN / 2)
		return NULL;
	s->wlo = lo & ~4095ull;
	s->whi = s->wlo + vm_read(s, s->win, s->wlo, WIN);
	return lo + len <= s->whi ?
		       (const uint64_t *)((const char *)s->win + (lo - s->wlo)) :
		       NULL;
}

/* The blocks of the worklist, and those their words put on it, till none
 * is left; each word as fn sees it, with arg, or when arg is STATE_ARG
 * the block's state as it is taken. */
#define STATE_ARG UINTPTR_MAX

static void drain_with(struct scan *s,
		       void (*fn)(struct scan *, uint64_t, uintptr_t),
		       uintptr_t arg)
{
	while (s->nwork && !s->noread) {
		uint32_t i = s->work[--s->nwork];
		uintptr_t a = arg == STATE_ARG ? s->st[i] : arg;
		size_t len = (size_t)((s->b[i].hi - s->b[i].lo) & ~7ull);
		const uint64_t *w = block_words(s, i, len);
		if (!w) {
			each_word(s, s->b[i].lo, s->b[i].lo + len, fn, a);
			continue;
		}
		for (size_t q = 0; q < len / 8; q++)
			fn(s, w[q], a);
	}
}

/* The blocks marked, and those they lead to, till none is left. */
static void drain(struct scan *s)
{
	drain_with(s, block_word, STATE_ARG);
}

/* The roots in [lo, hi) but kprof's own spans, the pages never touched
 * skipped when skip_absent. */
static void scan_root(struct scan *s, uint64_t lo, uint64_t hi,
		      int skip_absent)
{
	lo = (lo + 7) & ~7ull;
	hi &= ~7ull;
	for (size_t k = 0; k < s->nex && lo < hi; k++) {
		const struct kp_span *x = &s->ex[k];
		if (x->hi <= lo || x->lo >= hi)
			continue;
		if (x->lo > lo)
			scan_root(s, lo, x->lo, skip_absent);
		lo = (x->hi + 7) & ~7ull;
	}
	if (lo >= hi)
		return;
	if (!skip_absent) {
		s->root_bytes += hi - lo;
		each_word(s, lo, hi, root_word, 0);
		return;
	}
	/* a window of pages at a time: a reservation of terabytes (a
	 * runtime's heap, a sanitizer's shadow) is mostly never touched */
	unsigned char vec[4096];
	uint64_t at = lo & ~4095ull;
	while (at < hi) {
		uint64_t end = at + sizeof(vec) * 4096ull;
		if (end > hi)
			end = (hi + 4095) & ~4095ull;
		size_t np = (size_t)((end - at) / 4096);
		if (mincore((void *)at, end - at, vec) != 0) {
			memset(vec, 1, np); /* unknown: read it */
		}
		for (size_t p = 0; p < np;) {
			if (!(vec[p] & 1)) {
				p++;
				continue;
			}
			size_t q = p;
			while (q < np && (vec[q] & 1))
				q++;
			uint64_t a = at + p * 4096ull, b = at + q * 4096ull;
			if (a < lo)
				a = lo;
			if (b > hi)
				b = hi;
			s->root_bytes += b - a;
			each_word(s, a, b, root_word, 0);
			p = q;
		}
		at = end;
	}
}

/* ---- 2. the roots -------------------------------------------------------------- */

/*
 * A mapping [lo, hi) read as roots but where the allocator keeps blocks:
 * its free memory holds stale pointers, and its own lists point into the
 * blocks. The kernel merges adjacent anonymous mappings of one kind, so a
 * mapping holding a block may hold roots too (GCC's garbage-collected
 * pages beside a large block: read whole, or skipped whole, either was
 * wrong by megabytes). So only the pages of each block (with its header)
 * are left out, and of glibc's malloc (not another allocator the program
 * brought) the rest of a thread arena's heap too: it begins at a multiple
 * of its 64 MiB size (HEAP_MAX_SIZE) and the mapping's rest is heap (the
 * part not in use yet has no access: a mapping of its own). A block of
 * glibc's own mapping (a large one) starts 16 bytes into a page.
 */
#define ARENA_HEAP (64ull << 20)

static void scan_around_blocks(struct scan *s, uint64_t lo, uint64_t hi,
			       int skip_absent)
{
	int glibc = kp.cfg.malloc_owner[0] == 0;
	uint64_t at = lo;
	for (size_t i = first_from(s, lo); i < s->n && s->b[i].lo < hi; i++) {
		const struct blk *b = &s->b[i];
		uint64_t xlo = (b->lo - 16) & ~4095ull;
		uint64_t xhi = (b->hi + 4095) & ~4095ull;
		if (glibc && (b->lo & 4095) != 16) {
			uint64_t base = b->lo & ~(ARENA_HEAP - 1);
			if (xlo > base)
				xlo = base;
			xhi = hi;
		}
		if (xlo > at)
			scan_root(s, at, xlo, skip_absent);
		if (xhi > at)
			at = xhi;
	}
	if (at < hi)
		scan_root(s, at, hi, skip_absent);
}

static int self_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct scan *s = arg;
	uintptr_t me = (uintptr_t)&kp_leak_scan;
	(void)size;
	int mine = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && me >= a && me < a + ph->p_memsz)
			mine = 1;
	}
	if (!mine)
		return 0;
	for (int i = 0; i < info->dlpi_phnum &&
			 s->nex < sizeof(s->ex) / sizeof(s->ex[0]);
	     i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		s->ex[s->nex++] = (struct kp_span){
			a & ~(uintptr_t)4095,
			(a + ph->p_memsz + 4095) & ~(uintptr_t)4095 };
	}
	return 1;
}

static void sort_spans(struct kp_span *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct kp_span x = a[i];
		size_t j = i;
		for (; j > 0 && a[j - 1].lo > x.lo; j--)
			a[j] = a[j - 1];
		a[j] = x;
	}
}

/* Threads' pthread_self(), the descriptor glibc keeps at the top of a
 * thread's stack mapping: of those alive, and of those gone (and kprof's
 * writer), whose stacks glibc keeps for reuse with their old frames in
 * them. Of those, only the descriptor and up are roots (it points to
 * the thread's DTV, which glibc keeps too). */
struct hints {
	uintptr_t live[256], gone[256];
	unsigned nlive, ngone;
};

/* Threads gone whose rings other threads took (kp_leak_thread_gone):
 * appended without a lock, as the rings are taken. */
#define GONE_MAX 256
static uintptr_t gone[GONE_MAX];
static _Atomic unsigned ngone;

void kp_leak_thread_gone(uintptr_t pthread)
{
	unsigned i = atomic_fetch_add_explicit(&ngone, 1, memory_order_relaxed);
	if (i < GONE_MAX)
		gone[i] = pthread;
}

static void thread_hints(struct hints *h)
{
	h->nlive = h->ngone = 0;
	for (struct kp_ring *r = atomic_load(&kp.rings); r; r = r->next) {
		if (!r->pthread || r == kp.shared)
			continue;
		if (atomic_load(&r->state) == KP_RING_ACTIVE) {
			if (h->nlive < 256)
				h->live[h->nlive++] = r->pthread;
		} else if (h->ngone < 256) {
			h->gone[h->ngone++] = r->pthread;
		}
	}
	uintptr_t wt = kp_writer_pthread();
	if (wt && h->ngone < 256)
		h->gone[h->ngone++] = wt;
	for (unsigned k = 0; k < nchain; k++) /* the ancestors' writers */
		if (chain[k].writer && h->ngone < 256)
			h->gone[h->ngone++] = chain[k].writer;
	unsigned ng = atomic_load(&ngone);
	for (unsigned k = 0; k < ng && k < GONE_MAX && h->ngone < 256; k++)
		h->gone[h->ngone++] = gone[k];
}

/* The lowest of v[0, n) in [lo, hi), or 0. */
static uintptr_t lowest_in(const uintptr_t *v, unsigned n, uint64_t lo,
			   uint64_t hi)
{
	uintptr_t m = 0;
	for (unsigned i = 0; i < n; i++)
		if (v[i] >= lo && v[i] < hi && (!m || v[i] < m))
			m = v[i];
	return m;
}

/* A file of /proc whole, NUL-terminated, from the arena; NULL if not. */
static char *read_proc(const char *path)
{
	long fd = syscall(SYS_open, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 64 << 10, len = 0;
	char *b = kp_arena_alloc(cap);
	while (b) {
		if (cap - len < 4096) {
			char *n = kp_arena_alloc(2 * cap);
			if (n)
				memcpy(n, b, len);
			kp_arena_free(b);
			b = n;
			cap *= 2;
			continue;
		}
		long r = syscall(SYS_read, fd, b + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0) {
				kp_arena_free(b);
				b = NULL;
			}
			break;
		}
		len += (size_t)r;
	}
	syscall(SYS_close, fd);
	if (b)
		b[len] = 0;
	return b;
}

/* Every root mapping of /proc/self/maps scanned. @return 0, or why not
 * (enum kp_leak_scan_status): the maps cannot be read, kprof's own
 * mappings are not all known. */
static int scan_roots(struct scan *s, uint64_t sp)
{
	char *maps = read_proc("/proc/self/maps");
	if (!maps)
		return KP_LS_NOREAD;
	/* kprof's own mappings, the scan's among them: noted last, after
	 * everything it allocates (but what it frees) */
	size_t own = kp_own_spans(s->ex, 2048);
	if (own == (size_t)-1) {
		kp_arena_free(maps);
		return KP_LS_NOMEM;
	}
	s->nex = own;
	dl_iterate_phdr(self_segments, s);
	sort_spans(s->ex, s->nex);
	struct hints h;
	thread_hints(&h);
	struct sysinfo si;
	int swap = sysinfo(&si) != 0 || si.totalswap != 0;
	for (const char *p = maps; *p;) {
		const char *eol = strchr(p, '\n');
		if (!eol)
			eol = p + strlen(p);
		uint64_t lo = kp_parse_hex(&p, eol);
		p++;
		uint64_t hi = kp_parse_hex(&p, eol);
		p++;
		int rw = p[0] == 'r' && p[1] == 'w' && p[3] == 'p';
		/* the path, after offset, device and inode */
		const char *path = p;
		for (int f = 0; f < 4 && path < eol; f++) {
			while (path < eol && *path != ' ')
				path++;
			while (path < eol && *path == ' ')
				path++;
		}
		int special = path < eol && *path == '[' &&
			      strncmp(path, "[stack]", 7) != 0 &&
			      strncmp(path, "[heap]", 6) != 0 &&
			      strncmp(path, "[anon", 5) != 0;
		int brk = path < eol && !strncmp(path, "[heap]", 6);
		p = *eol ? eol + 1 : eol;
		if (!rw || special || brk)
			continue;
		uintptr_t tcb = lowest_in(h.gone, h.ngone, lo, hi);
		if (tcb && !lowest_in(h.live, h.nlive, lo, hi))
			lo = tcb; /* a thread gone, or the writer: its stack
				   * is stale, its descriptor glibc's */
		if (sp >= lo && sp < hi)
			lo = sp; /* below: kprof's frames, and stale ones */
		/* pages never touched skipped: of a file, those not in the
		 * page cache, whose bytes are the file's (a page the program
		 * wrote is its own, and present). Where swap may hold a page
		 * mincore calls absent, all are read but of the huge */
		scan_around_blocks(s, lo, hi, !swap || hi - lo > (1ull << 30));
		if (s->noread)
			break;
	}
	kp_arena_free(maps);
	return 0;
}

/* ---- 3b. the lost ones: definitely or indirectly --------------------------- */

static void lost_word(struct scan *s, uint64_t w, uintptr_t leader)
{
	long i = find(s, w);
	if (i < 0 || (uintptr_t)i == leader)
		return;
	if (s->st[i] == ST_NONE) {
		s->st[i] = ST_INDIRECT;
		s->work[s->nwork++] = (uint32_t)i;
	} else if (s->st[i] == ST_LEADER) {
		s->st[i] = ST_INDIRECT; /* its own are indirect already */
	}
}

static void classify_lost(struct scan *s)
{
	for (size_t i = 0; i < s->n && !s->noread; i++) {
		if (s->st[i] != ST_NONE)
			continue;
		s->st[i] = ST_LEADER;
		s->work[s->nwork++] = (uint32_t)i;
		drain_with(s, lost_word, i);
	}
}


/* ---- 4. the records ------------------------------------------------------------ */

static void put(unsigned type, unsigned kind, const int64_t *v, unsigned nv)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = (uint8_t)type;
	r.kind = (uint8_t)kind;
	memcpy(r.u.ext.v, v, nv * sizeof(*v));
	kp_writer_add_now(&r);
}

static int memory_events_lost(void)
{
	for (struct kp_ring *r = atomic_load(&kp.rings); r; r = r->next)
		for (int t = KP_REC_ALLOC; t <= KP_REC_REALLOC; t++)
			if (atomic_load_explicit(&r->lost[t],
						 memory_order_relaxed))
				return 1;
	return 0;
}

/* The scan with the blocks of t; the registers regs[0, nregs) are roots
 * too. @return enum kp_leak_scan_status; v[] filled. */
static int scan_blocks(struct tab *t, uint64_t sp, const uint64_t *regs,
		       size_t nregs, int64_t *v)
{
	struct scan *s = kp_arena_alloc(sizeof(*s));
	if (!s)
		return KP_LS_NOMEM;
	memset(s, 0, sizeof(*s));
	s->pid = (pid_t)syscall(SYS_getpid);
	s->glibc = kp.cfg.malloc_owner[0] == 0;
	size_t n = 0;
	for (size_t i = 0; i < t->cap; i++)
		n += t->e[i].ptr && t->e[i].at;
	s->b = kp_arena_alloc((n ? n : 1) * sizeof(*s->b));
	s->st = kp_arena_alloc(n ? n : 1);
	s->work = kp_arena_alloc((2 * n + 1) * sizeof(*s->work));
	s->buf = kp_arena_alloc(BUF);
	s->win = kp_arena_alloc(WIN);
	int status = KP_LS_NOMEM;
	if (!s->b || !s->st || !s->work || !s->buf || !s->win)
		goto out;

	/* kprof's blocks still allocated: neither freed by the app since
	 * (a FREE of the trace after it) nor taken again (an ALLOC after) */
	unsigned nsd = atomic_load(&nside);
	if (nsd > SIDE_MAX)
		goto out;
	struct kp_span *roots = kp_arena_alloc((nsd ? nsd : 1) *
					       sizeof(*roots));
	size_t nroots = 0;
	if (!roots)
		goto out;
	for (unsigned k = 0; k < nsd; k++) {
		uint64_t p = atomic_load(&side[k].ptr);
		int found;
		if (!p)
			continue;
		size_t at = tab_find(t, p, &found);
		uint64_t then = found ? (t->e[at].at ? t->e[at].at :
						       t->e[at].ft) : 0;
		if (then <= side[k].mono)
			roots[nroots++] = (struct kp_span){
				p, p + side[k].size };
	}
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].ptr && t->e[i].at)
			s->b[s->n++] = (struct blk){
				t->e[i].ptr,
				t->e[i].ptr + (t->e[i].size ? t->e[i].size : 1) };
	/* the table is done with: its memory goes before the scan's reads */
	kp_arena_free(t->e);
	t->e = NULL;
	t->cap = 0;
	struct blk *tmp = kp_arena_alloc((s->n ? s->n : 1) * sizeof(*tmp));
	uint32_t *count = kp_arena_alloc(65536 * sizeof(*count));
	if (!tmp || !count) {
		kp_arena_free(tmp);
		kp_arena_free(count);
		kp_arena_free(roots);
		goto out;
	}
	struct blk *sorted = sort_blocks(s->b, tmp, s->n, count);
	kp_arena_free(sorted == s->b ? tmp : s->b);
	s->b = sorted;
	kp_arena_free(count);
	uint64_t bytes = 0;
	for (size_t i = 0; i < s->n; i++) {
		bytes += s->b[i].hi - s->b[i].lo;
		if (i + 1 < s->n && s->b[i].hi > s->b[i + 1].lo)
			s->b[i].hi = s->b[i + 1].lo; /* a trace at odds */
		if (s->b[i].hi <= s->b[i].lo)
			s->b[i].hi = s->b[i].lo + 1;
	}
	memset(s->st, ST_NONE, s->n);
	s->lo = s->n ? s->b[0].lo : 0;
	s->hi = s->n ? s->b[s->n - 1].hi : 0;

	for (size_t k = 0; k < nregs; k++)
		mark(s, regs[k], ST_START);
	for (size_t k = 0; k < nroots; k++) {
		s->root_bytes += roots[k].hi - roots[k].lo;
		each_word(s, roots[k].lo, roots[k].hi & ~7ull, root_word, 0);
	}
	kp_arena_free(roots);
	int rc = scan_roots(s, sp);
	if (rc != 0) {
		status = rc;
		goto out;
	}
	drain(s);
	classify_lost(s);
	if (s->noread) {
		status = KP_LS_NOREAD;
		goto out;
	}

	/* 4. the LEAK records, and the sums */
	memset(v, 0, KP_LS_NV * sizeof(*v));
	v[KP_LS_BLOCKS] = (int64_t)s->n;
	v[KP_LS_BYTES] = (int64_t)bytes;
	v[KP_LS_ROOT_BYTES] = (int64_t)s->root_bytes;
	for (size_t i = 0; i < s->n; i++) {
		static const uint8_t cls[] = {
			[ST_NONE] = KP_LEAK_DEFINITE, /* (none is left) */
			[ST_INTERIOR] = KP_LEAK_POSSIBLE,
			[ST_START] = KP_LEAK_REACHABLE,
			[ST_LEADER] = KP_LEAK_DEFINITE,
			[ST_INDIRECT] = KP_LEAK_INDIRECT,
		};
		unsigned c = cls[s->st[i]];
		if (c == KP_LEAK_REACHABLE)
			continue;
		int64_t lv[KP_LEAK_NV] = {
			[KP_LEAK_PTR] = (int64_t)s->b[i].lo,
			[KP_LEAK_SIZE] = (int64_t)(s->b[i].hi - s->b[i].lo) };
		put(KP_REC_LEAK, c, lv, KP_LEAK_NV);
		unsigned at = c == KP_LEAK_DEFINITE ? KP_LS_DEF_BLOCKS :
			      c == KP_LEAK_INDIRECT ? KP_LS_IND_BLOCKS :
						      KP_LS_POS_BLOCKS;
		v[at]++;
		v[at + 1] += lv[KP_LEAK_SIZE];
	}
	status = KP_LS_DONE;
out:
	kp_arena_free(s->b);
	kp_arena_free(s->st);
	kp_arena_free(s->work);
	kp_arena_free(s->buf);
	kp_arena_free(s->win);
	kp_arena_free(s);
	return status;
}

/* Under a seccomp filter (a sandbox), a call it does not allow may kill
 * the process: the scan's process_vm_readv is not risked there. */
static int sandboxed(void)
{
	char st[4096];
	return kp_read_small("/proc/self/status", st, sizeof(st)) < 0 ||
	       !strstr(st, "\nSeccomp:\t0\n");
}

void kp_leak_scan(uintptr_t sp, const uint64_t *regs, size_t nregs)
{
	if (!kp.cfg.leak_scan || kp.mem_off)
		return;
	uint64_t t0 = kp_mono_ns();
	int64_t v[KP_LS_NV];
	memset(v, 0, sizeof(v));
	int status;
	struct tab t = { 0 };
	int fd = -1;
	if (kp_writer_forked() && (chain_lost || !nchain)) {
		status = KP_LS_FORKED;
	} else if (sandboxed()) {
		status = KP_LS_NOREAD;
	} else if (memory_events_lost() || (fd = kp_writer_read_back()) < 0) {
		status = KP_LS_LOST;
	} else if (tab_grow(&t) != 0) {
		status = KP_LS_NOMEM;
	} else if ((status = read_ancestors(&t)) != KP_LS_DONE) {
		/* (said) */
	} else if (read_trace(fd, &t, UINT64_MAX, NULL) != 0) {
		status = t.nomem ? KP_LS_NOMEM : KP_LS_LOST;
	} else {
		status = scan_blocks(&t, sp, regs, nregs, v);
	}
	if (fd >= 0)
		syscall(SYS_close, fd);
	kp_arena_free(t.e);
	if (status != KP_LS_DONE)
		memset(v, 0, sizeof(v));
	v[KP_LS_DUR] = (int64_t)(kp_mono_ns() - t0);
	put(KP_REC_LEAK_SCAN, (unsigned)status, v, KP_LS_NV);
}
