/* SPDX-License-Identifier: MIT */
/*
 * Stack capture and interning. The app thread unwinds with kprof's own
 * unwinder (unwind.c), or with libunwind's unw_backtrace (per-thread
 * cache) where that one cannot or KOTOBA_PROFILE_UNWIND says so; both give
 * the same pcs. It drops kprof's own frames, and looks the
 * pc array up in one process-wide table so each unique stack gets a small
 * dense id and is written to the trace once. (The allocation hooks' walk,
 * unwind.c's kp_stack_capture_at, starts below kprof's frames and hashes
 * as it goes: it comes here, kp_stacktab_find and kp_stack_capture_slow,
 * with the hash, or for what it does not do itself.)
 *
 * Lookups take no lock. The table holds (64-bit hash, id) slots; a stack
 * is identified by its hash alone, so a lookup touches one slot of a table
 * small enough to stay in cache, not the stored pcs. (Two different stacks
 * share a 64-bit hash with probability ~N^2/2^65: about 3e-8 for a million
 * unique stacks.) An insert takes a spin lock, re-probes, stores the pcs,
 * and publishes the slot's hash with release order after its id. When the
 * table is half full, the inserter builds one twice the size and publishes
 * it; a reader still holding the old table may miss newer stacks, falls
 * into the locked path and finds them there. Old tables are not freed
 * (readers may hold them); together they are smaller than the last one.
 * When the pc store or the id space is full, new stacks get id 0 and are
 * counted (kp_stacktab_dropped).
 */
#include "state.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TAB_MIN_BITS 14
#define TAB_MAX_BITS 24
#define MAX_STACKS ((1u << TAB_MAX_BITS) / 2)
#define STORE_WORDS ((size_t)64 << 20) /* 512 MiB of address space */

struct slot {
	_Atomic uint64_t hash; /* 0 = empty (a real hash of 0 becomes 1) */
	uint64_t id;
};

struct tab {
	uint64_t mask;
	struct slot s[];
};

static _Atomic(struct tab *) table;
static uint64_t *offsets;        /* id -> word offset in store */
static uint64_t *store;          /* per stack: depth, then pcs */
static size_t store_used;        /* words, under lock */
static _Atomic uint32_t count;   /* ids 1..count are published */
static _Atomic int lock;
static _Atomic uint64_t dropped; /* stacks not interned (table full) */
static uint32_t max_stacks;      /* MAX_STACKS, or fewer (caps()) */
static size_t store_words;       /* STORE_WORDS, or fewer */

/*
 * The store and the offsets are address space reserved up front (576 MiB,
 * pages made as they are used). Under a finite RLIMIT_AS (`ulimit -v`)
 * address space is what the program may allocate: with a 100 MB limit a
 * python3 that allocates 50 MB failed under kprof, and with 200 MB kprof
 * gave up. RLIMIT_DATA (`ulimit -d`) counts private writable mappings
 * the same way (kprof gave up at 200 and 400 MB). Under the lower of the
 * two they take at most a sixteenth of it; stacks past that are dropped
 * and counted, as when the table is full.
 */
static void caps(void)
{
	static const int limits[] = { RLIMIT_AS, RLIMIT_DATA };
	max_stacks = MAX_STACKS;
	store_words = STORE_WORDS;
	for (size_t i = 0; i < KP_ARRAY_SIZE(limits); i++) {
		struct rlimit rl;
		if (getrlimit(limits[i], &rl) != 0 ||
		    rl.rlim_cur == RLIM_INFINITY)
			continue;
		size_t words = (size_t)(rl.rlim_cur / 16 / sizeof(*store));
		if (words < store_words)
			store_words = words;
	}
	if (max_stacks > store_words / 4)
		max_stacks = (uint32_t)(store_words / 4);
}

static size_t tab_bytes(unsigned bits)
{
	return sizeof(struct tab) + ((size_t)1 << bits) * sizeof(struct slot);
}

static struct tab *tab_new(unsigned bits)
{
	struct tab *t = kp_map_noreserve(tab_bytes(bits));
	if (t)
		t->mask = ((uint64_t)1 << bits) - 1;
	return t;
}

int kp_pc_in_libunwind(const void *pc)
{
	Dl_info at, unw;
	return dladdr(pc, &at) &&
	       dladdr((void *)unw_set_caching_policy, &unw) &&
	       at.dli_fbase == unw.dli_fbase;
}

int kp_stacktab_init(void)
{
	struct tab *t = tab_new(TAB_MIN_BITS);
	caps();
	offsets = kp_map_noreserve((max_stacks + 1) * sizeof(*offsets));
	store = kp_map_noreserve(store_words * sizeof(*store));
	if (!t || !offsets || !store) {
		/* leave the program all of its address space */
		if (t)
			munmap(t, tab_bytes(TAB_MIN_BITS));
		if (offsets)
			munmap(offsets, (max_stacks + 1) * sizeof(*offsets));
		if (store)
			munmap(store, store_words * sizeof(*store));
		offsets = store = NULL;
		return -1;
	}
	atomic_store(&table, t);
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	unw_set_cache_size(unw_local_addr_space, 1024, 0);
	/* Warm libunwind up here, outside any hook: its first use takes
	 * locks and initialises lazily. A cursor does that; a backtrace
	 * would also build this thread's trace cache, 256 KiB it fills at
	 * once (64 page faults, about a fifth of what kprof added to the
	 * start of a short process here), which a thread the fast unwinder
	 * serves never uses: it is built, as for every other thread, at the
	 * thread's first unw_backtrace. */
	unw_context_t uc;
	unw_cursor_t cur;
	if (unw_getcontext(&uc) == 0)
		(void)unw_init_local(&cur, &uc);
	kp_unwind_init(); /* without it, kp_unwind hands every stack over */
	return 0;
}

void kp_stacktab_lock(void)
{
	kp_spin_lock(&lock);
}

void kp_stacktab_unlock(void)
{
	kp_spin_unlock(&lock);
}

/* @return the id of hash h in t, or 0 with *slot at the empty slot. */
static uint32_t probe(const struct tab *t, uint64_t h, uint64_t *slot)
{
	uint64_t i = h & t->mask;
	for (;;) {
		uint64_t v = atomic_load_explicit(&t->s[i].hash,
						  memory_order_acquire);
		if (v == h)
			return (uint32_t)t->s[i].id;
		if (!v) {
			*slot = i;
			return 0;
		}
		i = (i + 1) & t->mask;
	}
}

static void put(struct tab *t, uint64_t i, uint64_t h, uint32_t id)
{
	t->s[i].id = id;
	atomic_store_explicit(&t->s[i].hash, h, memory_order_release);
}

/* Double the table (lock held). @return the table to insert into. */
static struct tab *grow(struct tab *t)
{
	unsigned bits = 0;
	while (((uint64_t)1 << bits) <= t->mask)
		bits++;
	if (bits >= TAB_MAX_BITS)
		return t;
	struct tab *n = tab_new(bits + 1);
	if (!n)
		return t;
	for (uint64_t i = 0; i <= t->mask; i++) {
		uint64_t h = atomic_load_explicit(&t->s[i].hash,
						  memory_order_relaxed);
		uint64_t at = 0;
		if (h && !probe(n, h, &at))
			put(n, at, h, (uint32_t)t->s[i].id);
	}
	atomic_store_explicit(&table, n, memory_order_release);
	return n;
}

/* Intern pcs[0..n), whose kp_stack_hash is h; scan: see below. */
static __attribute__((noinline)) uint32_t intern_hashed(const uint64_t *pcs,
							uint32_t n, uint64_t h,
							int scan)
{
	uint64_t slot = 0;
	struct tab *t = atomic_load_explicit(&table, memory_order_acquire);
	uint32_t id = probe(t, h, &slot);
	if (KP_LIKELY(id))
		return id;
	/* A stack not seen before may run through code dlopened since the
	 * last scan (possibly where a dlclosed library used to be). Rescan
	 * (a no-op unless the loader's load/unload counters moved) before the
	 * stack is published, and outside our lock: the writer reads the
	 * stack count before the module list, so a stack never reaches the
	 * trace ahead of its module. */
	if (scan)
		kp_modules_scan();
	kp_stacktab_lock();
	t = atomic_load_explicit(&table, memory_order_relaxed);
	id = probe(t, h, &slot); /* someone may have won the race */
	if (!id) {
		uint32_t next = atomic_load_explicit(&count,
						     memory_order_relaxed) + 1;
		if (next > max_stacks || store_used + n + 1 > store_words) {
			atomic_fetch_add(&dropped, 1);
		} else {
			uint64_t *s = store + store_used;
			s[0] = n;
			memcpy(s + 1, pcs, n * sizeof(*pcs));
			offsets[next] = store_used;
			store_used += n + 1;
			id = next;
			atomic_store_explicit(&count, next,
					      memory_order_release);
			if ((uint64_t)next * 2 > t->mask) {
				t = grow(t);
				probe(t, h, &slot);
			}
			put(t, slot, h, id);
		}
	}
	kp_stacktab_unlock();
	return id;
}

static uint32_t intern(const uint64_t *pcs, uint32_t n)
{
	return intern_hashed(pcs, n, kp_stack_hash(pcs, n), 1);
}

/* Skip kprof's own frames (innermost). @return the first pc not in it. */
static int skip_self(const uint64_t *pcs, int n)
{
	int i = 0;
	while (i < n && pcs[i] >= kp.self_lo && pcs[i] < kp.self_hi)
		i++;
	return i;
}

/*
 * libunwind (1.6) checks memory before it reads it on some walks, those
 * that fall back on the frame chain (a frame without unwind info: JIT
 * code), with mincore(2) and then a write of a byte from it to a pipe of
 * its own, which fails with EFAULT where nothing is mapped. A sandbox's
 * seccomp filter may refuse mincore: Firefox's content processes report
 * each call as a violation, and a stricter filter kills the process
 * (tests/apps/jitjail.c). So while kprof's own libunwind walk runs on a
 * thread (in_libunwind: the app's signal handlers wait while kprof is
 * busy, signals.c), mincore calls every page resident without asking
 * the kernel, and the pipe write that follows is the check; a mincore of
 * the app's passes to the kernel.
 */
static KP_ALWAYS_INLINE int lu_backtrace(void **pcs, int max)
{
	kp_tls.in_libunwind = 1;
	int n = unw_backtrace(pcs, max);
	kp_tls.in_libunwind = 0;
	return n;
}

KP_EXPORT int mincore(void *addr, size_t len, unsigned char *vec)
{
	size_t page = (size_t)getpagesize();
	if (KP_UNLIKELY(kp_tls.in_libunwind) && vec &&
	    !((uintptr_t)addr & (page - 1))) {
		memset(vec, 1, (len + page - 1) / page);
		return 0;
	}
	return (int)syscall(SYS_mincore, addr, len, vec);
}

/* KOTOBA_PROFILE_UNWIND=verify */
static _Atomic uint64_t verify_n, verify_diff;

static void verify(const uint64_t *fast, int nf, const uint64_t *lu, int nl,
		   int depth)
{
	int i = skip_self(fast, nf), j = skip_self(lu, nl);
	int a = nf - i, b = nl - j;
	if (a > depth)
		a = depth;
	if (b > depth)
		b = depth;
	atomic_fetch_add_explicit(&verify_n, 1, memory_order_relaxed);
	if (a == b && memcmp(fast + i, lu + j, (size_t)a * sizeof(*lu)) == 0)
		return;
	uint64_t k = atomic_fetch_add(&verify_diff, 1);
	if (k >= 5)
		return;
	int at = 0;
	while (at < a && at < b && fast[i + at] == lu[j + at])
		at++;
	kp_warn("unwind verify: stacks differ at frame %d of %d (fast) / %d "
		"(libunwind): fast %#llx %#llx, libunwind %#llx %#llx", at, a,
		b, at < a ? (unsigned long long)fast[i + at] : 0ull,
		at + 1 < a ? (unsigned long long)fast[i + at + 1] : 0ull,
		at < b ? (unsigned long long)lu[j + at] : 0ull,
		at + 1 < b ? (unsigned long long)lu[j + at + 1] : 0ull);
}

/* KOTOBA_PROFILE_UNWIND=verify: a remembered walk (unwind.c,
 * kp_unwind_memo) named stack memo_id where walking and interning gave
 * id: counted with the stacks that differ. */
static void verify_memo_differs(uint32_t memo_id, uint32_t id)
{
	if (atomic_fetch_add(&verify_diff, 1) >= 5)
		return;
	kp_warn("unwind verify: the remembered walk gave stack %u, walking "
		"gave %u", memo_id, id);
}

void kp_stack_verify_memo(uint32_t memo_id, uint32_t id)
{
	atomic_fetch_add_explicit(&verify_n, 1, memory_order_relaxed);
	if (memo_id != id)
		verify_memo_differs(memo_id, id);
}

void kp_unwind_after_fork_child(void)
{
	atomic_store(&verify_n, 0);
	atomic_store(&verify_diff, 0);
	atomic_store(&kp_unwind_fallback_n, 0);
}

void kp_unwind_report(void)
{
	if (kp.cfg.unwind != KP_UNWIND_VERIFY)
		return;
	kp_warn("unwind verify: %llu stacks compared, %llu differ, %llu the "
		"fast unwinder left to libunwind",
		(unsigned long long)atomic_load(&verify_n),
		(unsigned long long)atomic_load(&verify_diff),
		(unsigned long long)atomic_load(&kp_unwind_fallback_n));
}

/*
 * kp_stack_capture and capture_memo_slow (kp_stack_capture_memo's walk):
 * with m, the walk is remembered in m (kp_unwind_memo) for the next
 * capture from the same frame (kp_unwind_memo_hit). Not for every capture:
 * where stacks keep changing, an allocation-heavy program's, remembering
 * costs ~40 instructions a stack and saves nothing. memo_id: the
 * remembered id that KOTOBA_PROFILE_UNWIND=verify checks against this walk
 * (0: none).
 */
static KP_ALWAYS_INLINE uint32_t capture(const uintptr_t *memo_fp,
					 uint32_t memo_id,
					 struct kp_unwind_memo *m)
{
	int depth = kp.cfg.stack_depth;
	if (depth <= 0)
		return 0;
	uint64_t buf[KP_MAX_STACK_DEPTH + 16];
	int n = -1;
	if (m && KP_LIKELY(kp.cfg.unwind != KP_UNWIND_LIBUNWIND))
		n = kp_unwind_memo(buf, depth + 16, memo_fp, m);
	else if (kp.cfg.unwind != KP_UNWIND_LIBUNWIND)
		n = kp_unwind(buf, depth + 16);
	if (KP_UNLIKELY(kp.cfg.unwind == KP_UNWIND_VERIFY)) {
		uint64_t lu[KP_MAX_STACK_DEPTH + 16];
		int nl = lu_backtrace((void **)lu, depth + 16);
		if (n >= 0)
			verify(buf, n, lu, nl, depth);
		memcpy(buf, lu, (size_t)(nl > 0 ? nl : 0) * sizeof(*buf));
		n = nl;
	} else if (n < 0) {
		n = lu_backtrace((void **)buf, depth + 16);
	}
	int i = skip_self(buf, n);
	n -= i;
	uint32_t id = 0;
	if (n > 0)
		id = intern(buf + i, (uint32_t)(n > depth ? depth : n));
	if (m)
		m->id = id; /* remembered with the walk */
	if (m && KP_UNLIKELY(memo_id) && memo_id != id)
		verify_memo_differs(memo_id, id);
	return id;
}

/* The stack by libunwind alone (the fast unwinder gave up on it). */
static __attribute__((noinline)) uint32_t capture_lu(int depth)
{
	uint64_t buf[KP_MAX_STACK_DEPTH + 16];
	int n = lu_backtrace((void **)buf, depth + 16);
	int i = skip_self(buf, n);
	n -= i;
	if (n <= 0)
		return 0;
	return intern(buf + i, (uint32_t)(n > depth ? depth : n));
}

uint32_t kp_stack_capture(void)
{
	return kp_pystack_in(capture(NULL, 0, NULL));
}

/* kp_stack_capture_at's own verify (KOTOBA_PROFILE_UNWIND=verify): the
 * pcs against libunwind's, and the hash taken while walking against the
 * pcs' own. @return libunwind's stack's id. */
static __attribute__((noinline)) uint32_t verify_at(const uint64_t *pcs, int n,
						   uint64_t h, int depth)
{
	uint64_t lu[KP_MAX_STACK_DEPTH + 16];
	int nl = lu_backtrace((void **)lu, depth + 16);
	if (n >= 0) {
		verify(pcs, n, lu, nl, depth);
		if (h != kp_stack_hash(pcs, (uint32_t)n)) {
			atomic_fetch_add(&verify_diff, 1);
			kp_warn("unwind verify: the walk hashed its %d pcs as "
				"%#llx", n, (unsigned long long)h);
		}
	}
	int i = skip_self(lu, nl);
	nl -= i;
	if (nl <= 0)
		return 0;
	return intern(lu + i, (uint32_t)(nl > depth ? depth : nl));
}

uint32_t kp_stacktab_find(uint64_t h)
{
	uint64_t slot;
	return probe(atomic_load_explicit(&table, memory_order_acquire), h,
		     &slot);
}

/*
 * kp_stack_capture_at (unwind.c) but for a stack seen before, found by
 * the fast walk: pcs[0..n), hashed h (pcs NULL: no fast walk). Keeps
 * errno.
 */
__attribute__((noinline)) uint32_t kp_stack_capture_slow(const uint64_t *pcs,
							 int n, uint64_t h,
							 int depth)
{
	int saved = errno;
	uint32_t id;
	if (!pcs)
		id = capture(NULL, 0, NULL);
	else if (kp.cfg.unwind == KP_UNWIND_VERIFY)
		id = verify_at(pcs, n, h, depth);
	else if (n < 0)
		id = capture_lu(depth);
	else
		id = n ? intern_hashed(pcs, (uint32_t)n, h, 1) : 0;
	errno = saved;
	return id;
}

/* Called from one place in each of kp_stack_capture_memo and
 * kp_stack_capture_memo_at (memo_end, inline there; unwind.c,
 * MEMO_FIXED: a memo is used
 * through one of the two only, so its first two steps stay decided by
 * its key). */
static __attribute__((noinline)) uint32_t capture_memo_slow(const uintptr_t *fp,
							   uint32_t memo_id,
							   struct kp_unwind_memo *m)
{
	return capture(fp, memo_id, m);
}

/* The end of a capture from frame fp with memo m, whose check gave id:
 * a walk unless id is m's (or verify: walk anyway, and compare the ids),
 * then the Python frames. Inline in each capture function: their one
 * call each of capture_memo_slow. */
static KP_ALWAYS_INLINE uint32_t memo_end(const uintptr_t *fp, uint32_t id,
					  struct kp_unwind_memo *m)
{
	if (!id || KP_UNLIKELY(kp.cfg.unwind != KP_UNWIND_FAST)) {
		id = capture_memo_slow(fp, id, m);
		/* not a tail call: the walk goes through the frame fp */
		__asm__ volatile("" ::: "memory");
	}
	return kp_pystack_in_memo(id, m->no_py ? NULL : &m->py);
}

__thread struct kp_unwind_memo kp_io_memo[2]
	__attribute__((tls_model("initial-exec")));

__attribute__((noinline)) uint32_t kp_stack_capture_memo(struct kp_unwind_memo *m,
							 uint8_t *mru)
{
	const uintptr_t *fp = __builtin_frame_address(0);
	if (mru)
		m += *mru;
	uint32_t id = kp_unwind_memo_hit(fp, m);
	if (!id && mru) {
		/* the other one, used last but one; a new walk replaces it */
		*mru ^= 1;
		m += *mru ? 1 : -1;
		id = kp_unwind_memo_hit(fp, m);
	}
	return memo_end(fp, id, m);
}

/*
 * Only the thread that allocated *m uses it: a memo holds addresses in
 * that thread's stack, and another thread's capture, checking them while
 * the owner rewrites them, could read a torn memo (and so the stack of a
 * thread that has since exited). *m is published with a compare and swap,
 * so two threads' first captures agree on one memo. @return the memo
 * this thread may use, NULL for none (another thread's, or no memory).
 */
static __attribute__((noinline)) struct kp_unwind_memo *
memo_at(struct kp_unwind_memo **m)
{
	struct kp_tls *t = &kp_tls;
	if (KP_UNLIKELY(!t->tid))
		t->tid = (uint32_t)kp_gettid();
	struct kp_unwind_memo *cur = __atomic_load_n(m, __ATOMIC_ACQUIRE);
	if (KP_UNLIKELY(!cur)) {
		/* the Python frames' room only in python3.11 (a third of the
		 * memo); a memo made before kprof knew stays without */
		int py = kp_pystack_enabled;
		size_t size = py ? sizeof(*cur) :
				   offsetof(struct kp_unwind_memo, py);
		struct kp_unwind_memo *n = kp_arena_alloc(size);
		if (!n)
			return NULL;
		memset(n, 0, size);
		n->no_py = !py;
		n->owner = t->tid;
		if (__atomic_compare_exchange_n(m, &cur, n, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			cur = n;
		else
			kp_arena_free(n); /* another thread's came first */
	}
	return cur->owner == t->tid ? cur : NULL;
}

/* kp_stack_capture_memo of the memo *m (memo_at), keyed by this
 * function's own frame: a statement's every run comes here, and the
 * memo's check is all it does when the stack is the one of its last run. */
__attribute__((noinline)) uint32_t
kp_stack_capture_memo_at(struct kp_unwind_memo **m)
{
	const uintptr_t *fp = __builtin_frame_address(0);
	struct kp_unwind_memo *cur = __atomic_load_n(m, __ATOMIC_ACQUIRE);
	if (KP_UNLIKELY(!cur) || KP_UNLIKELY(cur->owner != kp_tls.tid)) {
		cur = memo_at(m);
		if (!cur)
			return kp_stack_capture();
	}
	return memo_end(fp, kp_unwind_memo_hit(fp, cur), cur);
}

/*
 * The writer thread's interning (CPU samples): no module scan, since the
 * writer never calls into the loader (a thread inside dlopen may be
 * waiting for it, see modules.c). A sample in a library dlopened since the
 * last scan resolves once an app thread's next new stack rescans.
 */
uint32_t kp_stack_intern_pcs(const uint64_t *pcs, uint32_t n)
{
	if (n > KP_MAX_STACK_DEPTH)
		n = KP_MAX_STACK_DEPTH;
	return n ? intern_hashed(pcs, n, kp_stack_hash(pcs, n), 0) : 0;
}

uint32_t kp_stacktab_count(void)
{
	return atomic_load_explicit(&count, memory_order_acquire);
}

const uint64_t *kp_stacktab_get(uint32_t id, uint32_t *depth)
{
	const uint64_t *s = store + offsets[id];
	*depth = (uint32_t)s[0];
	return s + 1;
}

uint64_t kp_stacktab_dropped(void)
{
	return atomic_load(&dropped);
}
