/* SPDX-License-Identifier: MIT */
/*
 * The preload's one global state, its per-thread state, and the prototypes
 * shared between preload/ files. Everything here runs inside the host
 * process: on hot paths nothing may allocate from the app's heap, take a
 * lock the app could hold, or touch stdio; errno is preserved by callers.
 */
#ifndef KP_STATE_H
#define KP_STATE_H

#include "compat.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/types.h>
#include <time.h>

#include "alloc.h"
#include "evblock.h"
#include "record.h"

/* ---- configuration (config.c) -------------------------------------------- */

enum kp_overflow { KP_OVERFLOW_WAIT = 0, KP_OVERFLOW_DROP = 1 };

struct kp_config {
	int memory;          /* KOTOBA_PROFILE_MEMORY: record allocations */
	char output[1024];   /* KOTOBA_PROFILE_OUTPUT: path template */
	int stack_depth;     /* KOTOBA_PROFILE_STACK_DEPTH: 0 = no stacks */
	unsigned buffer_kb;  /* KOTOBA_PROFILE_BUFFER_KB: ring size per thread */
	int overflow;        /* KOTOBA_PROFILE_OVERFLOW: enum kp_overflow */
	unsigned flush_ms;   /* KOTOBA_PROFILE_FLUSH_MS: max time to disk */
	int zstd_level;      /* KOTOBA_PROFILE_ZSTD_LEVEL */
	int zstd_raw;        /* literals raw: no stacks, no level asked for */
	int io;              /* KOTOBA_PROFILE_IO: record I/O calls */
	int io_stacks;       /* KOTOBA_PROFILE_IO_STACKS: stacks on I/O */
	int leak_scan;       /* KOTOBA_PROFILE_LEAK_SCAN: at exit, find the
			      * blocks no pointer leads to (leakscan.c) */
	int io_capture;      /* io_stacks and a stack_depth: capture them */
	/* query profiling (query.c, hook_sqlite.c, hook_libpq.c) */
	int query;           /* KOTOBA_PROFILE_QUERY: record queries */
	unsigned query_hooks; /* KOTOBA_PROFILE_QUERY_HOOKS: KP_QHOOK_* */
	char query_plugin[512]; /* KOTOBA_PROFILE_QUERY_PLUGIN: "" = none */
	unsigned slow_query_ms; /* KOTOBA_PROFILE_SLOW_QUERY_MS */
	int query_text_full; /* KOTOBA_PROFILE_QUERY_TEXT=full */
	long sqlite_counters; /* KOTOBA_PROFILE_SQLITE_COUNTERS: KP_SQC_AUTO,
			       * KP_SQC_API, or an offset to try (>= 0) */
	unsigned snap_ms;    /* KOTOBA_SAMPLING_INTERVAL_MS: snapshots */
	unsigned long max_snaps; /* KOTOBA_MAX_SNAPSHOTS: at most, a trace */
	int cpu;             /* KOTOBA_PROFILE_CPU: sample CPU time */
	int signals;         /* KOTOBA_PROFILE_SIGNALS (auto: = cpu): end the
			      * trace before a signal kills (signals.c) */
	unsigned cpu_hz;     /* KOTOBA_PROFILE_CPU_HZ: samples per CPU-second */
	int unwind;          /* KOTOBA_PROFILE_UNWIND: enum kp_unwind_mode */
	int python;          /* KOTOBA_PROFILE_PYTHON: Python frames (pystack.c) */
	int deepbind;        /* KOTOBA_PROFILE_DEEPBIND: see into modules
			      * loaded with RTLD_DEEPBIND (deepbind.c) */
	char programs[512];  /* KOTOBA_PROFILE_PROGRAMS: "" = every program */
	/* Not a variable: the object whose malloc the app calls when that
	 * is not kprof's (lifecycle.c); memory is then 0. "" = kprof's. */
	char malloc_owner[256];
};

enum kp_unwind_mode {
	KP_UNWIND_FAST = 0,      /* kprof's unwinder, libunwind as fallback */
	KP_UNWIND_LIBUNWIND = 1, /* libunwind only */
	KP_UNWIND_VERIFY = 2,    /* both; count the stacks where they differ */
};

#define KP_SQC_AUTO (-1L)
#define KP_SQC_API (-2L)

#define KP_QHOOK_SQLITE 1u
#define KP_QHOOK_LIBPQ 2u

void kp_config_load(struct kp_config *c);
/* This process's program is one KOTOBA_PROFILE_PROGRAMS names (or it
 * names none): it is traced. */
int kp_config_program_wanted(const struct kp_config *c);
const char *kp_unwind_mode_name(int mode);
/* KOTOBA_PROFILE_QUERY_HOOKS (query.c): "all" (default), "none", or a
 * comma list of sqlite, libpq -> KP_QHOOK_* bits; and back to text. */
unsigned kp_query_hooks_parse(const char *s);
const char *kp_query_hooks_name(unsigned hooks);
/* The effective settings as key/value strings, for the trace header. */
unsigned kp_config_pairs(const struct kp_config *c, const char **keys,
			 const char **vals, char *scratch, size_t scratch_len);

/* ---- ring events (ring.c) ------------------------------------------------ */

/*
 * A per-thread ring is an array of 32-byte slots; an event is a head slot
 * and nx continuation slots: a raw event as the app thread captured it,
 * which the writer turns into a struct kp_rec (ticks -> ns). Its payload
 * (len bytes) is laid out over the head's a and b (16 bytes) and then each
 * continuation slot's data (24 bytes); a continuation slot repeats the
 * head's tsc, so the writer's watermark may look at any slot but a run's
 * (kp_ev_run below: it reads those at multiples of KP_RING_G). So the
 * common events take one slot, half a cache line: a FREE (a = ptr, len 8)
 * and a malloc's ALLOC (a = ptr, b = size, len 16); an ALLOC with an
 * alignment (c) and a REALLOC (a old, b new, c size, d dur) take two, as
 * an extension event of five values (I/O calls) does.
 *
 * The thread of an event is its ring's owner (kp_ring.tid), but in the
 * shared ring of dying threads, where each event follows a KP_EV_TID slot
 * naming its thread.
 */
struct kp_ev {
	uint64_t tsc;   /* raw timestamp (kp_ticks()) */
	uint8_t type;   /* enum kp_rec_type, or KP_EV_TID */
	uint8_t kind;   /* alloc kind, end reason */
	uint16_t len;   /* payload bytes */
	uint32_t stack; /* interned stack id, 0 = none */
	uint64_t a, b;  /* the payload's first 16 bytes */
};
_Static_assert(sizeof(struct kp_ev) == 32, "half a cache line per slot");

struct kp_ev_cont {
	uint64_t tsc;
	uint8_t data[24];
};
_Static_assert(sizeof(struct kp_ev_cont) == sizeof(struct kp_ev), "a slot");

#define KP_EV_HEAD_PAYLOAD 16
#define KP_EV_CONT_PAYLOAD 24
/* Shared ring only: the next event is thread a's (not a record type). */
#define KP_EV_TID 0xff

/*
 * A run (head slot type KP_EV_RUN): memory events its thread encoded
 * itself, as the body of an EVENTS block (EVENTS_NS without stacks;
 * record.h: each event's deltas from the one before; the first one's from
 * the run's tsc in ns and pointer 0), in the bytes of the slots after this
 * header. A thread puts its ALLOC, FREE and REALLOC events there
 * (kp_ring_push_mem): a few bytes an event where a slot took 32, and the
 * writer copies them instead of encoding each. The thread reserves slots
 * for its open run two at a time (publishing head), and stores len
 * (release) after each event; anything else it pushes closes the run
 * first (kp_run_close: last_tsc, last_ptr and nslots, then len with
 * KP_RUN_CLOSED). The writer takes a closed run whole, and an open one's
 * events so far (it resumes where it stopped: kp_ring.run_off). A run
 * lies within one block of KP_RING_G slots (so the slot at every
 * multiple of it is an event's head or a continuation with its tsc: the
 * writer's watermark reads those); it stops growing at KP_RUN_MAX bytes
 * (so it has fewer than KP_RUN_MAX + 4 slots' worth).
 */
#define KP_EV_RUN 0xfe
#define KP_NO_RUN UINT64_MAX
#define KP_RUN_CLOSED (1u << 31)
#define KP_RUN_MAX 2048
struct kp_ev_run {
	uint64_t tsc;          /* the first event's ticks */
	uint8_t type;          /* KP_EV_RUN */
	uint8_t pad;
	uint16_t nslots;       /* closed: the slots it takes, this one too */
	_Atomic uint32_t len;  /* bytes | events << 16 | KP_RUN_CLOSED */
	uint64_t last_tsc;     /* closed: the last event's ticks */
	uint64_t last_ptr;     /* closed: the pointer state after it */
};
_Static_assert(sizeof(struct kp_ev_run) == 32, "a slot");
_Static_assert(KP_RUN_MAX < 1u << 16, "bytes in len's low 16 bits");

/* Continuation slots of an event of len payload bytes. */
static inline uint32_t kp_ev_nx(uint32_t len)
{
	return len <= KP_EV_HEAD_PAYLOAD ? 0 :
		(len - KP_EV_HEAD_PAYLOAD + KP_EV_CONT_PAYLOAD - 1) /
		KP_EV_CONT_PAYLOAD;
}

/* The block of slots a run lies within (kp_ev_run): a power of two that
 * divides the ring, so the ring's end is a block's end too. */
#define KP_RING_G(slots) ((slots) / 4 < 1024 ? (slots) / 4 : 1024)

enum kp_ring_state {
	KP_RING_ACTIVE = 0, /* owned by a live thread */
	KP_RING_CLOSED = 1, /* thread gone: writer drains, then frees */
	KP_RING_FREE = 2,   /* reusable by a new thread */
};

struct kp_ring {
	_Atomic uint64_t head;    /* producer: next slot to fill (release) */
	uint64_t tail_cache;      /* producer's last view of tail: re-read
				   * only when the ring looks full, so the
				   * consumer's line is not pulled per event */
	/* bytes read and written by the I/O calls of the ring's threads
	 * (IO_SUMMARY): written by the owner only, so without a locked
	 * instruction; summed over the rings at the end (fdtab.c) */
	_Atomic uint64_t io_seen_read, io_seen_write;
	/* the slot of the thread's open run (kp_ev_run), or KP_NO_RUN: set
	 * before the head that takes it is published, and after its close */
	_Atomic uint64_t open_run;
	char pad0[24];
	_Atomic uint64_t tail;    /* consumer: next slot to read (release) */
	/* threads waiting for space (ring.c, wait_for_space), and the futex
	 * word they sleep on, which the writer bumps to wake them */
	_Atomic uint32_t waiters, space_seq;
	char pad1[48];
	_Atomic int state;        /* enum kp_ring_state */
	uint32_t tid;             /* owner's tid while ACTIVE */
	uintptr_t pthread;        /* owner's pthread_self() while ACTIVE */
	uint64_t mask;            /* slots - 1 */
	uint64_t gmask;           /* KP_RING_G(slots) - 1 */
	/* the writer's: how far it took the run at its tail (0: not begun),
	 * the events it took, and the delta state there */
	uint32_t run_off, run_cnt;
	uint64_t run_ns, run_ptr;
	_Atomic uint64_t lost[KP_REC_TYPE_MAX + 1]; /* dropped, per type */
	struct kp_ring *next;     /* registry list, push-only */
	size_t map_len;           /* bytes mmapped for this ring */
	_Alignas(64) struct kp_ev slots[]; /* mask + 1 slots, by cache lines */
};

/* ---- per-thread state ---------------------------------------------------- */

struct kp_tls {
	struct kp_ring *ring; /* this thread's ring, NULL until first event */
	uint32_t tid;         /* gettid(), 0 until known */
	uint8_t busy;         /* inside kprof: nested calls pass through */
	uint8_t dead;         /* past its key destructor: use the shared ring */
	uint8_t writer;       /* this is the writer thread: never record */
	uint8_t db_call;      /* inside a database call (sqlite3_step): a
			       * sleep now is a lock wait (hook_wait.c) */
	uint8_t in_sqlite;    /* inside a real SQLite prepare or step
			       * (hook_sqlite.c), next to db_call: the
			       * recording step sets and restores both with
			       * one store each */
	uint8_t sig_deferred; /* a signal of the app's waits for busy to
			       * end (signals.c) */
	uint8_t io_memo_mru;  /* which of kp_io_memo was used last */
	uint8_t in_libunwind; /* in kprof's unw_backtrace (stacktab.c:
			       * its mincore calls) */
	/* the open run of ring (KP_EV_RUN) when run_p is not NULL: its next
	 * byte, the end of the slots reserved, its header, its events, and
	 * the delta state (ns, pointer) and ticks of its last event */
	uint8_t *run_p, *run_end;
	struct kp_ev_run *run;
	uint32_t run_n;
	uint64_t run_ns, run_ptr, run_tsc;
};
_Static_assert(offsetof(struct kp_tls, in_sqlite) ==
		       offsetof(struct kp_tls, db_call) + 1,
	       "db_call and in_sqlite side by side");

extern __thread struct kp_tls kp_tls;

/*
 * Leaving kprof's code on this thread: busy back to 0, then let in the
 * app's signals that arrived while it was set (signals.c deferred them).
 * Every place that clears busy does it through these. The fences keep the
 * compiler from moving the store and the test across each other: a signal
 * that comes before the store is deferred and seen by the test, one after
 * it runs the app's handler at once.
 */
void kp_sig_release(void);
static KP_ALWAYS_INLINE void kp_busy_leave(void)
{
	atomic_signal_fence(memory_order_seq_cst);
	kp_tls.busy = 0;
	atomic_signal_fence(memory_order_seq_cst);
	if (KP_UNLIKELY(kp_tls.sig_deferred))
		kp_sig_release();
}

/* Put busy back as it was (was: 0 leaves, as kp_busy_leave). */
static KP_ALWAYS_INLINE void kp_busy_restore(uint8_t was)
{
	if (was)
		kp_tls.busy = was;
	else
		kp_busy_leave();
}

/* ---- global state -------------------------------------------------------- */

enum kp_run_state {
	KP_ST_UNINIT = 0, /* nothing done yet */
	KP_ST_INIT,       /* some thread is initialising */
	KP_ST_RUNNING,    /* recording */
	KP_ST_OFF,        /* disabled (setuid, init failure) or finished */
};

struct kp_state {
	_Atomic int run;            /* enum kp_run_state */
	int mem_off;                /* KOTOBA_PROFILE_MEMORY=0 (set at init):
				     * every allocator call passes through */
	struct kp_config cfg;       /* read once at init */
	pid_t pid;                  /* process being traced (changes on fork) */
	pid_t ppid;                 /* its parent, read at init or fork */
	pid_t pgid;                 /* its process group then (the trace's
				     * header; hook_kill.c records changes) */
	uint64_t tsc0;              /* ticks at init */
	uint64_t mono0;             /* CLOCK_MONOTONIC ns at init */
	uint64_t wall0;             /* CLOCK_REALTIME ns at init */
	int use_tsc;                /* ticks are TSC (1) or mono ns (0) */
	uintptr_t self_lo, self_hi; /* libkprof.so's text, for stack trimming */
	struct kp_allocator alloc;  /* private allocator (arena.c) */
	_Atomic(struct kp_ring *) rings; /* registry of all rings */
	struct kp_ring *shared;     /* ring for dying threads, under shared_lock */
	_Atomic int shared_lock;
	_Atomic int writer_up;      /* writer thread is draining */
	_Atomic uint32_t wake_seq;  /* futex word: producers poke the writer */
	_Atomic int writer_sleeping;
	/* ticks -> ns as (ticks - tsc0) * run_mult >> 32 (the writer's
	 * factor, set once it is known): threads encode runs (KP_EV_RUN)
	 * with it; 0: they do not (not yet calibrated) */
	_Atomic uint64_t run_mult;
	/* kprof's cost to the app: waits for room in a full ring (ring.c) */
	_Atomic uint64_t ring_waits, ring_wait_ns;
};

/* hidden: one rip-relative load per field, not the GOT's address first */
KP_HIDDEN extern struct kp_state kp;

/* KOTOBA_PROFILE_MEMORY=0 (hook_mem.c): malloc and free jump straight to
 * the real ones from now on. */
void kp_mem_pass_all(void);

static inline int kp_recording(void)
{
	return atomic_load_explicit(&kp.run, memory_order_acquire) ==
	       KP_ST_RUNNING;
}

/*
 * kprof's spin locks (stack table inserts, module list, private allocator,
 * shared ring): short sections, never held across a call into the app.
 * Yielding keeps a lock holder that was preempted from being starved.
 */
static inline void kp_spin_lock(_Atomic int *l)
{
	while (atomic_exchange_explicit(l, 1, memory_order_acquire))
		sched_yield();
}

static inline void kp_spin_unlock(_Atomic int *l)
{
	atomic_store_explicit(l, 0, memory_order_release);
}

/* ---- clock (clock.c) ----------------------------------------------------- */

uint64_t kp_mono_ns(void);
uint64_t kp_wall_ns(void);
int kp_tsc_usable(void);
/* A tick reading and CLOCK_MONOTONIC read together: the middle of two
 * readings around one clock read, the closest pair of a few tries (an
 * interrupt between them moved the writer's factor by 0.6 %). */
void kp_clock_pair(uint64_t *ticks, uint64_t *mono);

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t kp_ticks(void)
{
	return kp.use_tsc ? __rdtsc() : kp_mono_ns();
}
#else
static inline uint64_t kp_ticks(void)
{
	return kp_mono_ns();
}
#endif

/* ---- real functions and raw syscalls (real.c) ----------------------------- */

struct stat;
struct statx;
struct kp_real {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	void (*_exit)(int) __attribute__((noreturn));
	void (*_Exit)(int) __attribute__((noreturn));
	void (*abort)(void) __attribute__((noreturn));
	void (*assert_fail)(const char *, const char *, unsigned int,
			    const char *) __attribute__((noreturn));
	void (*assert_perror_fail)(int, const char *, unsigned int,
				   const char *) __attribute__((noreturn));
	void (*assert_bsd)(const char *, const char *, int)
		__attribute__((noreturn));
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execv)(const char *, char *const[]);
	int (*execvp)(const char *, char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*pipe)(int[2]);
	int (*pipe2)(int[2], int);
	int (*capset)(void *, const void *);
	int (*unshare)(int);
	int (*setns)(int, int);
	int (*prctl)(int, unsigned long, unsigned long, unsigned long,
		     unsigned long);
	/* hook_thread.c */
	void *pthread_setname_np; /* int (*)(pthread_t, const char *) */
	/* cpu.c */
	void *pthread_create;  /* int (*)(pthread_t *, attr, fn, arg) */
	void *sigaction;       /* int (*)(int, act, old) */
	void *signal;          /* sighandler_t (*)(int, sighandler_t) */
	/* hook_wait.c */
	int (*usleep)(unsigned);
	unsigned (*sleep)(unsigned);
	int (*nanosleep)(const struct timespec *, struct timespec *);
	int (*clock_nanosleep)(int, int, const struct timespec *,
			       struct timespec *);
	int (*dlclose)(void *); /* unwind.c */
	int (*clone)(int (*)(void *), void *, int, void *, ...); /* hook_clone.c */
	/* hook_stat.c */
	int (*stat)(const char *, struct stat *);
	int (*lstat)(const char *, struct stat *);
	int (*fstatat)(int, const char *, struct stat *, int);
	int (*statx)(int, const char *, int, unsigned, struct statx *);
	/* hook_kill.c */
	int (*kill)(pid_t, int);
	int (*killpg)(pid_t, int);
	int (*sigqueue)(pid_t, int, const union sigval);
	int (*tgkill)(pid_t, pid_t, int);
	int (*pidfd_send_signal)(int, int, siginfo_t *, unsigned int);
	int (*setpgid)(pid_t, pid_t);
	int (*setpgrp)(void);
	pid_t (*setsid)(void);
};

KP_HIDDEN extern struct kp_real kp_real;
extern _Atomic int kp_resolving; /* dlsym in progress: use the boot pool */

void kp_real_resolve(void);
/* lifecycle.c's fork handlers (pthread_atfork; the child's calls cpu.c's):
 * hook_clone.c runs them around a clone that is a fork. */
void kp_fork_prepare(void);
void kp_fork_parent(void);
void kp_fork_child(void);
/* Inside the program's own run of the handlers (a prepare not yet
 * matched on this thread): then it runs the child's too, after its own
 * allocator's, and hook_clone.c must not run it before them. */
int kp_fork_nested(void);
void kp_cpu_after_fork_child(void);
void kp_io_real_fill(void); /* hook_io.c: the I/O functions */
pid_t kp_gettid(void);
long kp_sys_write(int fd, const void *buf, size_t n);
/* A file's identity, to tell whether an fd still names it (the app may
 * close it and reuse the number). Raw syscalls. */
struct kp_file_id {
	uint64_t dev, ino;
};
/* fd's identity into *id. @return 0, or -1 if fd is not open. */
int kp_file_id(long fd, struct kp_file_id *id);
/* Does fd (in the calling thread's table) name the file id? */
int kp_fd_is(long fd, const struct kp_file_id *id);
/* The target of the symbolic link path in buf, NUL-terminated and cut to
 * size - 1 bytes, empty when unreadable; @return its length. A raw
 * syscall: safe before initialisation and in the writer. */
size_t kp_readlink(const char *path, char *buf, size_t size);
/* The start of file path (a /proc file), at most size - 1 bytes read at
 * once, NUL-terminated; @return the bytes read, or -1 (unreadable, or
 * empty). Raw syscalls. */
long kp_read_small(const char *path, char *buf, size_t size);
/* The hex number at *p (before end), *p moved past it: the addresses of
 * a /proc/self/maps line (unwind.c, leakscan.c). */
static inline uintptr_t kp_parse_hex(const char **p, const char *end)
{
	uintptr_t v = 0;
	const char *s = *p;
	for (; s < end; s++) {
		char c = *s;
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			break;
		v = v << 4 | d;
	}
	*p = s;
	return v;
}

/* This process's executable, so; when readlink is refused (a sandbox's
 * seccomp filter), the path it was executed by (AT_EXECFN), which may be
 * relative or a symbolic link */
static inline size_t kp_self_exe(char *buf, size_t size)
{
	size_t n = kp_readlink("/proc/self/exe", buf, size);
	const char *fn = n ? NULL : (const char *)getauxval(AT_EXECFN);
	if (fn && size) {
		n = strnlen(fn, size - 1);
		memcpy(buf, fn, n);
		buf[n] = '\0';
	}
	return n;
}
/* path after its last '/' */
static inline const char *kp_base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ---- bootstrap pool (boot.c) --------------------------------------------- */

#define KP_BOOT_SIZE (256 * 1024)
KP_HIDDEN extern unsigned char kp_boot_pool[KP_BOOT_SIZE];

void *kp_boot_alloc(size_t n, size_t align);
/* Is p a boot pool block? (inline: free() asks it of every pointer) */
static inline int kp_boot_owns(const void *p)
{
	return (uintptr_t)p - (uintptr_t)kp_boot_pool < KP_BOOT_SIZE;
}
size_t kp_boot_size(const void *p);

/* ---- diagnostics (diag.c) ------------------------------------------------ */

void kp_warn(const char *fmt, ...) KP_PRINTF(1, 2);
extern int kp_warn_deferred;
void kp_warn_flush(void);
/* Remember fd 2 as kprof's stderr (diag.c): at start, before any message. */
void kp_warn_init(void);
void kp_warn_after_fork_child(void);

/* ---- private arena (arena.c) --------------------------------------------- */

int kp_arena_init(struct kp_allocator *a);
void *kp_arena_alloc(size_t n);
void kp_arena_free(void *p);
void kp_arena_lock(void);
void kp_arena_unlock(void);
/* Anonymous memory of len bytes reserved, not committed (the stack and
 * query-text tables: large, mostly untouched), or NULL. */
void *kp_map_noreserve(size_t len);
/* len bytes of anonymous memory of kprof's own (noted), or NULL. */
void *kp_own_map(size_t len, int noreserve);
/* kprof's own mappings, for the leak scan: each one noted when made,
 * forgotten (by its start) when unmapped. */
struct kp_span {
	uintptr_t lo, hi;
};
void kp_own_note(void *p, size_t len);
void kp_own_forget(void *p);
/* The mappings noted, copied to out; (size_t)-1 when they are more than
 * max or the table overflowed (then not all are known). */
size_t kp_own_spans(struct kp_span *out, size_t max);

/* ---- rings (ring.c) ------------------------------------------------------ */

/* This thread's ring, attaching one on first use; NULL if none can be had. */
struct kp_ring *kp_ring_self(void);
/* Close this thread's open run (kp_tls.run_p not NULL): before any other
 * event is pushed to its ring, and when the run cannot grow. */
void kp_run_close(void);
/* Push one event of type (below KP_REC_EXT_MIN) with a payload of len
 * bytes (see struct kp_ev); tsc 0 = now. */
void kp_ring_push(uint64_t tsc, uint8_t type, uint8_t kind, uint32_t stack,
		  const void *payload, uint32_t len);
/*
 * Push an extension event: type (>= KP_REC_EXT_MIN), kind and stack, its
 * layout's nv values (record.h; durations in ticks, the writer converts
 * those in dur_mask) and, for types with one, a string (cut to
 * KP_MAX_STR_LEN). tsc 0 = now. The caller has checked kp_ready() and set
 * kp_tls.busy, as for any event.
 */
void kp_ring_push_ext(uint64_t tsc, uint8_t type, uint8_t kind,
		      uint32_t stack, const int64_t *v, const char *str,
		      size_t str_len);
void kp_ring_thread_exit(void);
/* The tid of a thread sampled for CPU, else 0 (cpu.c). */
uint32_t kp_cpu_tid_of(pthread_t th);
/* A THREAD_NAME event: thread th is called name from now on (ring.c). */
void kp_ring_thread_name(pthread_t th, const char *name);
/* The same from an interposer: unless kprof is off or busy here, keeps
 * errno (hook_thread.c). */
void kp_thread_named(pthread_t th, const char *name);
/* This thread's name (16 bytes, NUL-terminated) for its THREAD_START:
 * the one kprof knows it by, else prctl(PR_GET_NAME) (hook_thread.c). */
void kp_thread_name_self(char *out);
/* The name a thread made now by this one starts with: 1 with it in out
 * and its generation in *gen, 0 when kprof does not know it. The new
 * thread takes it with kp_thread_name_take (cpu.c's pthread_create). */
int kp_thread_name_inherit(char *out, uint32_t *gen);
void kp_thread_name_take(const char *name, uint32_t gen);
void kp_ring_after_fork_child(void);
/*
 * While the writer is parked (kp_writer_park), a ring lets its thread
 * fill at most KP_RING_PARKED_SLOTS slots before it looks again (the
 * producer's view of the tail, tail_cache, held back), and each look
 * is a kp_writer_parked_tick: so the app's one thread flushes the trace
 * in time as it makes events, instead of once its whole ring is full.
 * kp_ring_parked holds back the calling thread's ring (the app's only
 * one, as the writer parks); a ring a thread takes while parked starts
 * held back.
 */
#define KP_RING_PARKED_SLOTS 32
void kp_ring_parked(void);
int kp_ring_init(void);
/* Wake the writer thread now; _poke only if it sleeps (the hot path). */
void kp_writer_wake(void);
void kp_writer_poke(void);

/*
 * Deferred QUERY_BEGIN records of this thread (query.c): written before
 * any other event of the thread; and the rest of its block of query
 * contexts. One block: one TLS offset to load where a query opens and
 * ends (four variables took four).
 */
#define KP_Q_PENDING 8
#define KP_Q_CTX_BLOCK 1024
struct kp_qpend {
	uint64_t ctx, tsc;
};
struct kp_qtls {
	uint64_t ctx_next, ctx_end;
	struct kp_qpend pending[KP_Q_PENDING];
	uint8_t npending;
};
extern __thread struct kp_qtls kp_qt;
void kp_query_flush(void);

/* An event's head slot: its time, then type, kind, len and stack. */
static KP_ALWAYS_INLINE void kp_ev_put_head(struct kp_ev *ev, uint64_t tsc,
					    uint8_t type, uint8_t kind,
					    uint32_t len, uint32_t stack)
{
	ev->tsc = tsc;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* type, kind, len, stack: one store, not four */
	uint64_t w0 = type | (uint64_t)kind << 8 | (uint64_t)len << 16 |
		      (uint64_t)stack << 32;
	_Static_assert(offsetof(struct kp_ev, stack) == 12,
		       "the layout the store assumes");
	__builtin_memcpy((char *)ev + offsetof(struct kp_ev, type), &w0, 8);
#else
	ev->type = type;
	ev->kind = kind;
	ev->len = (uint16_t)len;
	ev->stack = stack;
#endif
}

/*
 * Ask for the lines of the next slots of this thread's ring, for writing,
 * ahead of an event that will take them when a call returns (a query's
 * QUERY): the writer last read those lines on its own core, and a store
 * that must fetch one back holds the app thread up (~100 ns a line here).
 * Fetched while the call runs, they are this core's when the event is
 * written. Measured in one process, blocks of calls alternating with and
 * without the hook (tests/apps/abpairs.h), on the app thread's CPU clock:
 * on SQLite point selects in a read transaction the hook's cost went from
 * 8-11 % to 3-7 % of a query. (Before a 64-byte write() it made no
 * difference that 18 runs could see: the system call's own entry and
 * exit take longer than the fetch.)
 */
static KP_ALWAYS_INLINE void kp_ring_prefetch(unsigned slots)
{
	struct kp_ring *r = kp_tls.ring;
	if (KP_UNLIKELY(r == NULL))
		return;
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	const struct kp_ev *p = &r->slots[h & r->mask];
	/* two slots a line: every other slot from the first, and the last,
	 * touch every line of [h, h + slots). Not wrapped at the ring's end:
	 * a prefetch never faults, and one past the end fetches nothing the
	 * event needs (it takes slots from the start there), rarely. */
#pragma GCC unroll 8
	for (unsigned k = 0; k < slots; k += 2)
		__builtin_prefetch(p + k, 1, 3);
	if (!(slots & 1))
		__builtin_prefetch(p + slots - 1, 1, 3);
}

/* Publish head h + n; every quarter of the ring (at least a run's
 * block), wake the writer if it sleeps, so a busy thread rarely has to
 * wait for it. Each wake costs the app a futex call and, on a machine
 * whose cores its threads keep busy, a switch to the writer and back:
 * waking every sixteenth instead made alloc_bench stacks off 1.56x where
 * this is 1.52x (2 threads on 2 cores, 61 interleaved rounds). The
 * writer drains what it finds in cycles of a few thousand slots
 * (writer.c, CYCLE_SLOTS), so frames stay small all the same. */
static KP_ALWAYS_INLINE void kp_ring_publish(struct kp_ring *r, uint64_t h,
					     uint64_t n)
{
	atomic_store_explicit(&r->head, h + n, memory_order_release);
	uint64_t q = (r->mask >> 2) | r->gmask;
	if (KP_UNLIKELY(((h + n) & ~q) != (h & ~q)))
		kp_writer_poke();
}

/*
 * An event of up to five payload values (len bytes, at most 40: one or two
 * slots) and no string written straight into r, this thread's own ring
 * (kp_tls.ring), when it has room: the hot path of kp_ring_push_ext for
 * an extension event without a string (I/O calls), and of
 * kp_ring_push_mem. Calls nothing that may change errno (kp_writer_wake
 * keeps it). The caller has set kp_tls.busy and checked kp_qt.npending.
 * @return 0 when the ring looks full: the caller takes its slow path
 * (kp_ring_push_ext, kp_ring_push_mem_slow).
 */
static KP_ALWAYS_INLINE int kp_ring_try_push_head(struct kp_ring *r,
						  uint64_t tsc, uint8_t type,
						  uint8_t kind, uint32_t stack,
						  uint32_t len, uint64_t a,
						  uint64_t b, uint64_t c,
						  uint64_t d, uint64_t e)
{
	if (KP_UNLIKELY(kp_tls.run_p != NULL))
		kp_run_close();
	uint64_t n = 1 + kp_ev_nx(len);
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	if (KP_UNLIKELY(h + n - r->tail_cache > r->mask + 1))
		return 0;
	struct kp_ev *ev = &r->slots[h & r->mask];
	kp_ev_put_head(ev, tsc, type, kind, len, stack);
	ev->a = a;
	if (len > 8) /* a FREE's b is never read */
		ev->b = b;
	if (n > 1) {
		struct kp_ev_cont *k =
			(struct kp_ev_cont *)&r->slots[(h + 1) & r->mask];
		k->tsc = tsc;
		/* one store each: copied from an array on the stack, two of
		 * them went through a 16-byte load of two 8-byte stores,
		 * which the store buffer cannot forward (a stall) */
		__builtin_memcpy(k->data, &c, 8);
		__builtin_memcpy(k->data + 8, &d, 8);
		__builtin_memcpy(k->data + 16, &e, 8);
	}
	kp_ring_publish(r, h, n);
	return 1;
}

/* Payload bytes of a memory event: FREE ptr; ALLOC ptr, size[, align c];
 * REALLOC old, new, size, dur. */
static inline uint32_t kp_mem_len(uint8_t type, uint64_t c)
{
	return type == KP_REC_FREE ? 8 :
	       type == KP_REC_ALLOC ? (c ? 24 : 16) : 32;
}

/* Ticks -> ns since tsc0 with the writer's factor mult (kp.run_mult):
 * the one conversion, the writer's (writer.c) and a run's producer's, so
 * a run's times are the ones the writer gives its first and last
 * events. */
static KP_ALWAYS_INLINE uint64_t kp_ticks_to_ns(uint64_t ticks, uint64_t tsc0,
						uint64_t mult)
{
	if (ticks <= tsc0)
		return 0;
	return (uint64_t)(((unsigned __int128)(ticks - tsc0) * mult) >> 32);
}

static KP_ALWAYS_INLINE uint64_t kp_run_ns(uint64_t ticks, uint64_t mult)
{
	return kp_ticks_to_ns(ticks, kp.tsc0, mult);
}

/* A memory event (as kp_ring_push_mem's) into this thread's open run,
 * which has room for it; REALLOC's d (ticks) goes in as ns. */
static KP_ALWAYS_INLINE void kp_run_put(struct kp_tls *t, uint8_t type,
					uint8_t kind, uint32_t stack,
					uint64_t tsc, uint64_t a, uint64_t b,
					uint64_t c, uint64_t d)
{
	uint64_t mult = atomic_load_explicit(&kp.run_mult,
					     memory_order_relaxed);
	if (type == KP_REC_REALLOC)
		d = (uint64_t)(((unsigned __int128)d * mult) >> 32);
	uint8_t *p = kp_blk_put(t->run_p, &t->run_ns, &t->run_ptr,
				kp.cfg.stack_depth == 0, type, kind,
				kp_run_ns(tsc, mult), a, b, c, d, stack);
	struct kp_ev_run *hd = t->run;
	t->run_p = p;
	t->run_tsc = tsc;
	t->run_n++;
	atomic_store_explicit(&hd->len,
			      (uint32_t)(p - (uint8_t *)(hd + 1)) |
				      t->run_n << 16,
			      memory_order_release);
}

void kp_ring_push_mem_slow(uint8_t type, uint8_t kind, uint32_t stack,
			   uint64_t tsc, uint64_t a, uint64_t b, uint64_t c,
			   uint64_t d);

/*
 * An extension event of nv values and no string, inline where nv is a
 * constant (a QUERY), written straight into this thread's ring when it
 * has room and no deferred QUERY_BEGIN waits: the head slot takes two
 * values, each continuation slot three. @return 0, having pushed
 * nothing, otherwise. tsc is not 0. The caller has set kp_tls.busy, as
 * for any event.
 */
static KP_ALWAYS_INLINE int kp_ring_try_vals(uint64_t tsc, uint8_t type,
					     uint8_t kind, uint32_t stack,
					     const int64_t *v, unsigned nv)
{
	struct kp_tls *t = &kp_tls;
	struct kp_ring *r = t->ring;
	const unsigned head_nv = KP_EV_HEAD_PAYLOAD / 8,
		       cont_nv = KP_EV_CONT_PAYLOAD / 8;
	const uint32_t len = nv * 8;
	const uint64_t n = 1 + kp_ev_nx(len);
	if (KP_UNLIKELY(t->run_p != NULL))
		kp_run_close();
	if (KP_LIKELY(r != NULL) && KP_LIKELY(!kp_qt.npending)) {
		uint64_t h = atomic_load_explicit(&r->head,
						  memory_order_relaxed);
		uint64_t mask = r->mask; /* once: the stores may alias it */
		/* room, and the n slots do not wrap (one event in a ring's
		 * round does: kp_ring_push_ext takes it), so they are
		 * ev[0..n), at constant offsets */
		if (KP_LIKELY(h + n - r->tail_cache <= mask + 1) &&
		    KP_LIKELY((h & mask) + n <= mask + 1)) {
			struct kp_ev *ev = &r->slots[h & mask];
			kp_ev_put_head(ev, tsc, type, kind, len, stack);
			unsigned m = nv < head_nv ? nv : head_nv;
			__builtin_memcpy(&ev->a, v, m * 8);
			/* unrolled: nv is a constant, so is every copy's size */
#pragma GCC unroll 16
			for (uint64_t k = 1; k < n; k++) {
				struct kp_ev_cont *c =
					(struct kp_ev_cont *)&ev[k];
				unsigned at = head_nv +
					      (unsigned)(k - 1) * cont_nv;
				c->tsc = tsc;
				m = nv - at < cont_nv ? nv - at : cont_nv;
				__builtin_memcpy(c->data, v + at, m * 8);
			}
			kp_ring_publish(r, h, n);
			return 1;
		}
	}
	return 0;
}

/* kp_ring_push_ext() of such an event: kp_ring_try_vals, else through
 * kp_ring_push_ext. */
static KP_ALWAYS_INLINE void kp_ring_push_vals(uint64_t tsc, uint8_t type,
					       uint8_t kind, uint32_t stack,
					       const int64_t *v, unsigned nv)
{
	if (KP_LIKELY(kp_ring_try_vals(tsc, type, kind, stack, v, nv)))
		return;
	int saved = errno; /* a full ring may wait: keep the app's */
	kp_ring_push_ext(tsc, type, kind, stack, v, NULL, 0);
	errno = saved;
}

/* The allocator hooks' path: an event with these fields, encoded into
 * this thread's open run when it has room (kp_run_put), else, until the
 * clock's factor is known (the first ms), written straight into its ring
 * as a slot (inline: the call with its eight arguments cost a fifth of
 * the path). Keeps errno: the slow path (deferred query records, a run
 * to open or grow, a full ring, a thread's first event) saves it. */
static KP_ALWAYS_INLINE void kp_ring_push_mem(uint8_t type, uint8_t kind,
					      uint32_t stack, uint64_t tsc,
					      uint64_t a, uint64_t b,
					      uint64_t c, uint64_t d)
{
	struct kp_tls *t = &kp_tls;
	struct kp_ring *r = t->ring;
	if (!tsc)
		tsc = kp_ticks();
	if (t->run_p != NULL) {
		/* the open run has room for any event: into it */
		if (KP_LIKELY(t->run_p + KP_BLK_EVENT_MAX <= t->run_end) &&
		    KP_LIKELY(!kp_qt.npending)) {
			kp_run_put(t, type, kind, stack, tsc, a, b, c, d);
			return;
		}
	} else if (KP_LIKELY(r != NULL) && KP_LIKELY(!kp_qt.npending) &&
		   !atomic_load_explicit(&kp.run_mult, memory_order_relaxed) &&
		   KP_LIKELY(kp_ring_try_push_head(r, tsc, type, kind, stack,
						   kp_mem_len(type, c), a, b,
						   c, d, 0))) {
		return;
	}
	kp_ring_push_mem_slow(type, kind, stack, tsc, a, b, c, d);
}

/* ---- stacks (stacktab.c) ------------------------------------------------- */

int kp_stacktab_init(void);
/* Is pc inside libunwind (the library kprof shares with the app)? */
int kp_pc_in_libunwind(const void *pc);
/* Capture the caller's stack and intern it. 0 = none. */
uint32_t kp_stack_capture(void);
/*
 * The same for a caller whose stack is often the one it had last time (an
 * I/O call in a loop, a prepared statement run from one place): m
 * remembers that walk and its stack id (unwind.c), and a capture that
 * starts where it did and finds the same return addresses and saved frame
 * pointers on the stack takes the id without walking or interning.
 * With mru, m is two memos and *mru the one used last: a capture tries it,
 * then the other, and a walk that is neither's replaces the other's (a
 * loop of two calls, a read and a write or a send and a receive, takes
 * both from their memos, where one memo missed each time).
 * kp_io_memo is each thread's pair, for its I/O calls, with
 * kp_tls.io_memo_mru; kp_stack_capture_memo_at
 * allocates *m from the private arena at first use (NULL before;
 * kp_arena_free() it when done) for a caller that several threads may
 * share (a statement), and uses it only on the thread that allocated it:
 * a memo's words are addresses in its thread's stack.
 */
struct kp_unwind_memo;
uint32_t kp_stack_capture_memo(struct kp_unwind_memo *m, uint8_t *mru);
uint32_t kp_stack_capture_memo_at(struct kp_unwind_memo **m);
/*
 * kp_stack_capture for an allocation hook: fp is the hook's own frame
 * (__builtin_frame_address(0): fp[0] its caller's rbp, fp[1] its return
 * address), where the walk starts, so kprof's frames are not walked.
 * Keeps errno.
 */
uint32_t kp_stack_capture_at(const uintptr_t *fp);
/* The id of the stack whose kp_stack_hash is h, 0 when not interned (no
 * lock, no store); kp_stack_capture_at's other paths, given what its fast
 * walk found (pcs[0..n), hash h; pcs NULL: no walk). Keeps errno. */
uint32_t kp_stacktab_find(uint64_t h);
uint32_t kp_stack_capture_slow(const uint64_t *pcs, int n, uint64_t h,
			       int depth);
/*
 * The stack table's hash of pcs[0..n) (innermost first): each pc mixed in
 * as the walk meets it (kp_stack_capture_at hashes while it walks), the count
 * at the end, then murmur3's finaliser (every input bit reaches the low,
 * index bits). Never 0 (an empty slot).
 */
#define KP_STACK_HASH_SEED 0x9e3779b97f4a7c15ull
static inline uint64_t kp_stack_hash_step(uint64_t h, uint64_t pc)
{
	h = (h ^ pc) * 0xff51afd7ed558ccdull;
	return (h << 31) | (h >> 33);
}
static inline uint64_t kp_stack_hash_fin(uint64_t h, uint32_t n)
{
	h ^= n;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h ? h : 1;
}
static inline uint64_t kp_stack_hash(const uint64_t *pcs, uint32_t n)
{
	uint64_t h = KP_STACK_HASH_SEED;
	for (uint32_t i = 0; i < n; i++)
		h = kp_stack_hash_step(h, pcs[i]);
	return kp_stack_hash_fin(h, n);
}
/* Published stacks: ids 1..kp_stacktab_count(). */
uint32_t kp_stacktab_count(void);
const uint64_t *kp_stacktab_get(uint32_t id, uint32_t *depth);
void kp_stacktab_lock(void);
void kp_stacktab_unlock(void);
uint64_t kp_stacktab_dropped(void);
/* Intern pcs (innermost first) captured elsewhere (writer thread: CPU
 * samples). 0 = table full. */
uint32_t kp_stack_intern_pcs(const uint64_t *pcs, uint32_t n);

/* ---- the fast unwinder (unwind.c) ---------------------------------------- */

/* Map the rule cache. @return 0, -1 when the fast unwinder is unavailable
 * (then kp_unwind always returns -1). */
int kp_unwind_init(void);
/*
 * The return addresses of the caller's stack, innermost first, as
 * libunwind's unw_backtrace gives them (pcs[0] is in the caller of
 * kp_unwind). @return how many, or -1 when a frame is beyond the fast
 * unwinder: then ask libunwind for the whole stack.
 */
int kp_unwind(uint64_t *pcs, int max);
/*
 * A remembered walk (unwind.c explains the key and the steps); all zero
 * remembers nothing.
 */
#define KP_UNWIND_MEMO_STEPS 48 /* longer walks are not remembered */
/* a return address a step, and an rbp where a later step needs it */
#define KP_UNWIND_MEMO_CHECKS (2 * KP_UNWIND_MEMO_STEPS)
/*
 * The Python frames a remembered walk's last capture read (pystack.c,
 * kp_pystack_adorn_memo): what each frame read held (its code, last
 * instruction, entry flag, and the frame it points to as its caller),
 * so that a capture from the same place compares them instead of hashing
 * them again. All zero remembers nothing.
 */
#define KP_PYCHAIN_MAX 48 /* frames; a deeper walk is not remembered */
struct kp_pychain {
	uint64_t key;      /* the key of the frames adorned last (0: none) */
	uint64_t top;      /* the first frame read */
	uint32_t cid, id;  /* the machine stack, and the stack made of it
			    * with these frames (0: nothing remembered) */
	uint32_t n;        /* frames read */
	uint8_t entry[KP_PYCHAIN_MAX];
	uint64_t code[KP_PYCHAIN_MAX], instr[KP_PYCHAIN_MAX],
		next[KP_PYCHAIN_MAX];
};
struct kp_unwind_memo {
	uint64_t fp, rbp, ra, top, gen; /* the key */
	uint32_t steps;                 /* the walk's steps, UINT32_MAX:
					 * none remembered */
	uint32_t id;                    /* its stack id, 0 = none */
	uint32_t owner; /* kp_stack_capture_memo_at: the one thread using it */
	uint32_t nchecks;               /* in check[] */
	uint32_t no_py; /* 1: allocated without py (not python3.11) */
	/* what the first two steps (the key decides them) read: step 0's
	 * rbp, step 1's return address's and rbp's places */
	uint64_t rbp0, ra_at1, rbp_at1;
	struct {
		uint64_t at, word; /* the stack word at at, as the walk read it */
	} check[KP_UNWIND_MEMO_CHECKS];
	struct kp_pychain py; /* the Python frames of the last capture;
			       * last, and not there when no_py */
};
extern __thread struct kp_unwind_memo kp_io_memo[2]; /* its pair */
/*
 * Python's frames in stacks (pystack.c; python3.11): kp_pystack_init()
 * finds the interpreter (once, at start-up); kp_pystack_adorn() makes the
 * machine stack id the stack with the calling thread's Python frames in
 * (id itself when it runs none). The writer names each Python frame it
 * meets by a
 * JIT_CODE record: entries 1..kp_pystack_count(), at pc kp_pystack_pc(i)
 * (16 bytes), called kp_pystack_name(i).
 */
void kp_pystack_init(void);
extern int kp_pystack_enabled; /* set by kp_pystack_init, then fixed */
uint32_t kp_pystack_adorn(uint32_t id);
/* The same for a remembered walk's capture, which remembers its frames
 * in c (the calling thread's own; NULL: nowhere). */
uint32_t kp_pystack_adorn_memo(uint32_t id, struct kp_pychain *c);
/* kp_pystack_adorn where it is on, inline: id itself in most programs. */
static KP_ALWAYS_INLINE uint32_t kp_pystack_in(uint32_t id)
{
	return KP_UNLIKELY(kp_pystack_enabled) ? kp_pystack_adorn(id) : id;
}
static KP_ALWAYS_INLINE uint32_t kp_pystack_in_memo(uint32_t id,
						    struct kp_pychain *c)
{
	return KP_UNLIKELY(kp_pystack_enabled) ? kp_pystack_adorn_memo(id, c) :
						 id;
}
/* KOTOBA_PROFILE_UNWIND=verify (stacktab.c): a remembered capture named
 * stack memo_id where capturing again gave id; counted with the stacks
 * compared, and with those that differ when they do. */
void kp_stack_verify_memo(uint32_t memo_id, uint32_t id);
uint32_t kp_pystack_count(void);
uint64_t kp_pystack_pc(uint32_t entry);
const char *kp_pystack_name(uint32_t entry, uint32_t *len);
void kp_pystack_lock(void);
void kp_pystack_unlock(void);
/*
 * CPU samples (cpu.c): kp_pystack_sample() stores the interrupted thread's
 * Python frames (at most max), named, as a word each at w, from the
 * signal handler (async-signal-safe: its reads go through the kernel, it
 * never waits for the lock), and returns how many;
 * kp_pystack_sample_stack() puts them into the machine stack id, on the
 * writer thread.
 */
unsigned kp_pystack_sample(uint64_t *w, unsigned max);
uint32_t kp_pystack_sample_stack(uint32_t id, const uint64_t *w, unsigned n);
/* kp_unwind for kp_stack_capture_memo, remembered in m (keyed by key_fp,
 * that function's frame): when >= 0, the caller stores in m->id the stack
 * the pcs were interned as (0: none). */
int kp_unwind_memo(uint64_t *pcs, int max, const uintptr_t *key_fp,
		   struct kp_unwind_memo *m);
/* m's stack id if a walk below frame fp would read what m's did, else 0. */
uint32_t kp_unwind_memo_hit(const uintptr_t *fp,
			    const struct kp_unwind_memo *m);
/*
 * The same walk from an interrupted context (CPU samples, in the signal
 * handler): pcs[0] = pc + 1, then return addresses, every read within
 * [rsp, top). Async-signal-safe. @return how many, -1 when a frame is beyond
 * the fast unwinder.
 */
int kp_unwind_regs(uint64_t pc, uint64_t rsp, uint64_t rbp, uint64_t top,
		   uint64_t *pcs, int max);
/* Forget every cached rule (a module was unmapped). */
void kp_unwind_flush(void);
/* Stacks the fast unwinder handed to libunwind. */
extern _Atomic uint64_t kp_unwind_fallback_n;
/* KOTOBA_PROFILE_UNWIND=verify: the end-of-run summary on stderr; the
 * counts start from zero in a forked child (its own summary). */
void kp_unwind_report(void);
void kp_unwind_after_fork_child(void);

/* ---- modules (modules.c) ------------------------------------------------- */

struct kp_module {
	uint64_t bias, lo, hi;
	uint64_t seq_add;      /* change number when it appeared */
	uint64_t seq_gone;     /* change number when it disappeared, or 0 */
	uint32_t stacks_add;   /* stacks published when it appeared */
	uint32_t stacks_gone;  /* ... and when it disappeared */
	char *path;            /* arena */
	uint8_t build_id[64];
	uint32_t build_id_len;
	struct kp_module *next;
};

/* One change of the module map, for the writer. */
struct kp_module_change {
	const struct kp_module *m;
	uint64_t seq;
	uint32_t stacks;       /* stacks published before the change */
	int gone;              /* 1: unmapped, 0: mapped */
};

/* The address a pointer entry of a module's dynamic section (DT_SYMTAB,
 * DT_STRTAB, ...) stands for: glibc relocates these in place; a
 * vDSO-like module may not (got.c, modules.c). */
static inline uintptr_t kp_dyn_ptr(uintptr_t v, uintptr_t base)
{
	return v < base ? base + v : v;
}
/* Rescan the loaded modules if the loader's counters moved. */
/* The address of name as the object of info defines it in its own
 * dynamic symbols (a function), NULL if it does not (modules.c). */
struct dl_phdr_info;
void *kp_module_defines(const struct dl_phdr_info *info, const char *name);
void kp_modules_scan(void);
/* The path of the object whose malloc the app calls, in owner, when that
 * is not kprof's (it comes before libkprof.so in the lookup order):
 * returns 1 then (2 when it is the program itself), else 0. */
int kp_modules_malloc_owner(char *owner, size_t n);
/* Fill out[] with the module changes after *since, oldest first, advance
 * *since past them and return their number; if more than max, return the
 * number needed and change nothing. Caller holds the modules lock. */
unsigned kp_modules_changes(uint64_t *since, struct kp_module_change *out,
			    unsigned max);
void kp_modules_lock(void);
void kp_modules_unlock(void);
/* How many of pcs[0..n) to keep: pcs[0], then up to the first return
 * address that lies in no mapped module (a frame-pointer walk through
 * code without frame pointers reads garbage there). Takes the lock. */
unsigned kp_modules_known_prefix(const uint64_t *pcs, unsigned n);

/* ---- writer (writer.c) --------------------------------------------------- */

int kp_writer_start(void);
/* Drain everything now; if final, write END and stop the writer thread. */
void kp_writer_sync(int final, int reason, int64_t status);
void kp_writer_exec(const char *path);
/* For the leak scan (leakscan.c): every event so far written, then the
 * trace opened for reading (a new fd, -1 when it cannot be); whether it
 * began in a fork child; the writer thread's pthread_self() (0: none);
 * an extension record written now, as the calling thread's. */
int kp_writer_read_back(void);
int kp_writer_forked(void);
uintptr_t kp_writer_pthread(void);
void kp_writer_add_now(struct kp_rec *rec);

/* ---- leak scan (leakscan.c) ---------------------------------------------- */

/* The process is exiting (exit, _exit): find the blocks in use that
 * nothing points to any more, and write them into the trace (LEAK,
 * LEAK_SCAN records). sp: the exiting thread's stack where kprof was
 * entered (the frames below it are kprof's); regs[0, nregs): its
 * registers there. */
void kp_leak_scan(uintptr_t sp, const uint64_t *regs, size_t nregs);
/* Set when the scan is asked for: the interposers' busy paths (kprof's
 * own calls into the app's allocator) note and forget what those calls
 * allocate and free (leakscan.c). */
extern int kp_side_on;
/* Around a fork (lifecycle.c, writer.c): the time just before it, in the
 * parent; in the child, its parent's trace and writer thread. */
void kp_leak_fork_prepare(void);
void kp_leak_fork_child(const char *path, uintptr_t writer);
/* A ring of a thread that is gone taken by another: the leak scan keeps
 * that thread's pthread_self() (its stack's descriptor) all the same. */
void kp_leak_thread_gone(uintptr_t pthread);
void kp_side_note(void *p, size_t n);
void kp_side_forget(void *p);

/* The app is about to chroot: the trace's fd, if the app closed it,
 * opened again by path while the path still leads to it (writer.c). */
void kp_writer_keep_open(void);
/* Stop the writer thread for the app's last thread, trace left open; and
 * start it again (lifecycle.c). */
void kp_writer_park(void);
void kp_writer_unpark(void);
/* Parked, in the traced process (not a copy a fork made)? Then a thread
 * whose ring is full writes it out itself (kp_writer_sync), as the writer
 * would. */
int kp_writer_parked(void);
/*
 * kp_writer_parked, and when it is, the periodic flush the writer thread
 * would have made: kp_writer_sync on the calling thread once FLUSH_MS (or
 * the shorter interval of a young process) has passed since the last
 * one. Rings ask it every KP_RING_PARKED_SLOTS slots while parked (ring.c,
 * kp_ring_parked): a trace that a SIGKILL cuts short then holds what the
 * app did up to a flush interval before, parked or not.
 */
int kp_writer_parked_tick(void);
/* The app's threads as glibc counts them, kprof's writer left out
 * (lifecycle.c): one more before pthread_create, one less if it fails
 * (kp_app_threads_add); a new thread's start (kp_app_thread_start). */
void kp_app_threads_add(int n);
void kp_app_thread_start(void);
/* No thread of the app is left, only the writer (lifecycle.c). */
int kp_writer_alone(void);
/* For a call that needs a single-threaded process (hook_creds.c): when
 * the caller is the app's only thread, park the writer and return 1
 * (the caller then calls kp_writer_unpark); else 0. hook_stat.c leaves
 * it parked until the app starts a thread (kp_app_threads_add). */
int kp_writer_step_out(void);
/* hook_stat.c: path (relative to dirfd) is this process's /proc entry
 * leaf ("/task", "/stat"), by which the app counts its threads: the
 * writer steps out (kp_writer_step_out) and stays out. */
void kp_app_counts_threads(int dirfd, const char *path, const char *leaf);
/* Run fn(arg) on the writer thread and wait for it; does nothing when
 * there is no writer thread (or the caller is the writer). */
void kp_writer_call(void (*fn)(void *), void *arg);
/* Move fd above the app's fds (F_DUPFD_CLOEXEC); returns the new fd. */
int kp_high_fd(int fd);
void kp_writer_fork_prepare(void);
void kp_writer_fork_parent(void);
void kp_writer_after_fork_child(void);

/* Copy this process's JIT map (/tmp/perf-<pid>.map) into the trace as
 * JIT_CODE records, what it gained since the last copy, at the trace's end
 * (final; else an exec) (jitmap.c; in a cycle). */
struct kp_writer;
void kp_jitmap_write(struct kp_writer *kw, uint64_t ts, uint32_t tid,
		     int final);
/* A SNAPSHOT of the process's memory, faults and CPU time, if the last is
 * an interval old (KOTOBA_SAMPLING_INTERVAL_MS, doubled as the trace
 * nears KOTOBA_MAX_SNAPSHOTS) or this is the trace's end (snapshot.c; in
 * a cycle). */
void kp_snapshot_write(struct kp_writer *kw, uint64_t ts, int final);
/* How long after ts the next snapshot is due (UINT64_MAX: none is), for
 * the writer's sleep; and a fork child's trace starts its own count. */
uint64_t kp_snapshot_wait_ns(uint64_t ts);
void kp_snapshot_after_fork_child(void);
/* The process's memory cgroup now: the bytes it holds and the most it may
 * (the least limit on the way up), each -1 when not known or none
 * (cgroup.c). */
void kp_cgroup_memory(int64_t *usage, int64_t *limit);
/* The writer thread's CPU time so far, in ns; 0 if it has none (writer.c). */
uint64_t kp_writer_cpu_ns(void);

/* ---- I/O (hook_io.c, fdtab.c) ------------------------------------------- */

/* Bytes kprof wrote itself (trace, warnings), for the blind-spot count. */
extern _Atomic uint64_t kp_self_wchar, kp_self_rchar;
/* Baseline of /proc/self/io at init; the counters after a fork. */
void kp_io_init(void);
void kp_io_after_fork_child(void);
/* At the end of the trace (still recording): the IO_SUMMARY record. */
void kp_io_finish(void);
/* pipe/pipe2 (hook_creds.c) returned rc to caller: record the two ends. */
void kp_io_pipe(const int fds[2], int rc, int flags, uint64_t t0,
		const void *caller);
/* The app created or cancelled a thread (cpu.c, hook_io.c): recorded
 * calls go through glibc from now on (kp_io_direct, iohook.h). */
void kp_io_direct_off(void);
/* ---- queries (query.c): shared by the query hooks ------------------------ */

/* May hook sqlite/libpq (KP_QHOOK_*) record now? (not busy, recording) */
static inline int kp_query_want(unsigned hook);
/* Write the deferred QUERY_BEGINs of this thread (ring.c, before any
 * other record of the thread); kp_qt above holds them. */
uint64_t kp_query_open_slow(uint64_t tsc);
/* The query ctx ends: its QUERY_BEGIN, if still deferred, is not needed.
 * @return 1 when it was (so it is never written). */
int kp_query_drop_pending(uint64_t ctx);

/*
 * A QUERY in the ring in two slots (KP_QC_NV values) instead of five,
 * when its values fit (kp_query_close_packed): status 0, no prepare time,
 * rows and ctx under 2^32, a text_id, each SQLite counter, conn and flags
 * under 2^16. The writer unpacks it (kp_qc_unpack) before anything reads
 * it: the trace holds the whole QUERY either way. Told from the whole one
 * by its len (KP_QC_NV * 8: a whole one has KP_Q_NV * 8 and more).
 * KP_QC_TEXT = text_id | conn << 32 | flags << 48; KP_QC_ROWS = rows |
 * ctx << 32; KP_QC_COUNTERS = fullscan | sort << 16 | autoindex << 32 |
 * vmstep << 48.
 */
enum { KP_QC_DUR, KP_QC_TEXT, KP_QC_ROWS, KP_QC_COUNTERS, KP_QC_VALHASH,
       KP_QC_NV };
_Static_assert((int)KP_QC_NV < (int)KP_Q_NV, "a packed QUERY is shorter");

/* KP_QC_TEXT of text_id, conn and flags (each in its range). */
static inline uint64_t kp_qc_text(uint32_t text_id, uint64_t conn,
				  uint64_t flags)
{
	return text_id | conn << 32 | flags << 48;
}

/* KP_QC_COUNTERS of SQLite's counters as two words, fullscan | sort << 32
 * and autoindex | vmstep << 32, each under 2^16. */
static KP_ALWAYS_INLINE uint64_t kp_qc_counters(uint64_t w01, uint64_t w23)
{
	return ((w01 | w01 >> 16) & 0xffffffffu) | (w23 | w23 >> 16) << 32;
}

static inline void kp_qc_unpack(int64_t *v, const int64_t *w)
{
	uint64_t t = (uint64_t)w[KP_QC_TEXT], r = (uint64_t)w[KP_QC_ROWS],
		 c = (uint64_t)w[KP_QC_COUNTERS];
	v[KP_Q_CTX] = (int64_t)(r >> 32);
	v[KP_Q_DUR] = w[KP_QC_DUR];
	v[KP_Q_ROWS] = (int64_t)(r & 0xffffffffu);
	v[KP_Q_STATUS] = 0;
	v[KP_Q_FULLSCAN] = (int64_t)(c & 0xffff);
	v[KP_Q_SORT] = (int64_t)(c >> 16 & 0xffff);
	v[KP_Q_AUTOINDEX] = (int64_t)(c >> 32 & 0xffff);
	v[KP_Q_VMSTEP] = (int64_t)(c >> 48);
	v[KP_Q_PREPARE_DUR] = 0;
	v[KP_Q_VALHASH] = w[KP_QC_VALHASH];
	v[KP_Q_FLAGS] = (int64_t)(t >> 48);
	v[KP_Q_CONN] = (int64_t)(t >> 32 & 0xffff);
	v[KP_Q_TEXT_ID] = (int64_t)(t & 0xffffffffu);
}

/* Open a query on this thread (its QUERY_BEGIN is deferred until the
 * thread records something else; keeps errno, and sets kp_tls.busy
 * around the pushes it may make). @return its ctx. */
static KP_ALWAYS_INLINE uint64_t kp_query_open(uint64_t tsc)
{
	unsigned n = kp_qt.npending;
	if (KP_UNLIKELY(kp_qt.ctx_next == kp_qt.ctx_end || n >= KP_Q_PENDING))
		return kp_query_open_slow(tsc);
	uint64_t ctx = kp_qt.ctx_next++;
	kp_qt.pending[n].ctx = ctx;
	kp_qt.pending[n].tsc = tsc;
	kp_qt.npending = (uint8_t)(n + 1);
	/* the slots the query's QUERY will take, unless its own events (a
	 * QUERY_BEGIN, allocations, I/O) come first: then theirs */
	kp_ring_prefetch(1 + kp_ev_nx(KP_QC_NV * 8));
	return ctx;
}
/*
 * Write the QUERY record of a query that began at tsc0 (ticks), called
 * from stack (kp_query_stack where it began), and ends now: its text as
 * text_id (kp_qtext_intern), else text (raw; fingerprinted here unless
 * QUERY_TEXT=full, or already a fingerprint when fp; interned here), v[]
 * with KP_Q_DUR/ PREPARE_DUR in ticks (dur is filled here from tsc0).
 * The caller holds kp_tls.busy.
 */
void kp_query_close(uint8_t source, uint64_t tsc0, uint32_t text_id,
		    const char *text, size_t len, int fp, int64_t *v,
		    uint32_t stack);
/*
 * What ending a query does before its QUERY is pushed, on every path:
 * its deferred QUERY_BEGIN dropped if still there (then *ctx becomes 0,
 * record.h, which packs into one byte). @return 0 when nothing may be
 * pushed: the trace ended while the query ran (another thread's exit).
 */
static KP_ALWAYS_INLINE int kp_query_end_ctx(uint64_t *ctx)
{
	unsigned n = kp_qt.npending;
	if (KP_LIKELY(n == 1) && kp_qt.pending[0].ctx == *ctx) {
		kp_qt.npending = 0;
		*ctx = 0;
	} else if (*ctx && n && kp_query_drop_pending(*ctx)) {
		*ctx = 0;
	}
	return kp_recording();
}

/* A query's stack, its call site's: taken where it begins (the first
 * step of a SQLite statement's run, libpq's send, kprof_query_begin),
 * not where it ends (a fetch, PQgetResult in a driver's loop). 0 with
 * stacks off; kp_stack_capture_memo_at with memo, when not NULL. Keeps
 * errno. */
static KP_ALWAYS_INLINE uint32_t kp_query_stack(struct kp_unwind_memo **memo)
{
	if (kp.cfg.stack_depth <= 0)
		return 0;
	int saved = errno; /* the unwind may change it */
	uint32_t stack = memo ? kp_stack_capture_memo_at(memo) :
				kp_stack_capture();
	errno = saved;
	return stack;
}

/* kp_query_end_ctx on v's ctx, and the duration into v from tsc0 to now
 * (ticks). */
static KP_ALWAYS_INLINE int kp_query_end_at(uint64_t now, uint64_t tsc0,
					    int64_t *v)
{
	v[KP_Q_DUR] = (int64_t)(now - tsc0);
	uint64_t ctx = (uint64_t)v[KP_Q_CTX];
	int r = kp_query_end_ctx(&ctx);
	v[KP_Q_CTX] = (int64_t)ctx;
	return r;
}

/* kp_query_close of a query whose text is text_id (or none: 0) that
 * began at tsc0 and ends at now (ticks), inline for the SQLite hook's
 * every run. */
static KP_ALWAYS_INLINE void kp_query_close_id_at(uint8_t source,
						  uint64_t tsc0, uint64_t now,
						  uint32_t text_id, int64_t *v,
						  uint32_t stack)
{
	if (!kp_query_end_at(now, tsc0, v))
		return;
	v[KP_Q_TEXT_ID] = text_id;
	kp_ring_push_vals(now, KP_REC_QUERY, source, stack, v, KP_Q_NV);
}

/* kp_query_close_id_at of a query whose values fit the packed form,
 * given packed (text, cnt: see KP_QC_*; the SQLite hook packs them from
 * its registers): two ring slots, or the whole QUERY when its ctx does
 * not fit or the ring has no room (kp_query_push_unpacked). */
void kp_query_push_unpacked(uint8_t source, uint64_t now, uint32_t stack,
			    const int64_t *w, uint64_t ctx);
static KP_ALWAYS_INLINE void kp_query_close_packed(
	uint8_t source, uint64_t tsc0, uint64_t now, uint64_t ctx,
	uint64_t rows, uint64_t cnt, uint64_t text, uint64_t valhash,
	uint32_t stack)
{
	if (!kp_query_end_ctx(&ctx))
		return;
	int64_t w[KP_QC_NV] = { (int64_t)(now - tsc0), (int64_t)text,
				(int64_t)(rows | ctx << 32), (int64_t)cnt,
				(int64_t)valhash };
	if (KP_LIKELY(ctx >> 32 == 0) &&
	    KP_LIKELY(kp_ring_try_vals(now, KP_REC_QUERY, source, stack, w,
				       KP_QC_NV)))
		return;
	kp_query_push_unpacked(source, now, stack, w, ctx);
}

/* Fingerprint (or copy, QUERY_TEXT=full) text into out[cap]; the value
 * hash of its literals into *valhash; sets KP_QF_TEXT_FULL/CUT in *flags.
 * @return the length written. */
size_t kp_query_text(const char *text, size_t len, char *out, size_t cap,
		     uint64_t *valhash, int64_t *flags);
/*
 * Query texts (qtext.c): the id of text s[0..n) with hash h (kp_fnv1a
 * from KP_FP_NO_VALUES), interned on first sight; 0 when the table is
 * full (the QUERY then carries the text inline). The writer writes ids
 * 1..kp_qtext_count() as QUERY_TEXT records; kp_qtext_get() is one's text.
 */
uint32_t kp_qtext_intern(const char *s, size_t n, uint64_t h);
uint32_t kp_qtext_count(void);
const char *kp_qtext_get(uint32_t id, uint32_t *len);
void kp_qtext_lock(void);
void kp_qtext_unlock(void);
/* Load KOTOBA_PROFILE_QUERY_PLUGIN (query.c), once, at start-up. */
void kp_query_plugin_load(void);
/* got.c: redirect every loaded module's GOT slots for symbol to
 * replacement (but libkprof's and the replacement's own module);
 * *real = the target. @return slots rewritten, -1 when unsupported or
 * the symbol is unknown. */
int kp_got_hook(const char *symbol, void *replacement, void **real);
/* A module just loaded with RTLD_DEEPBIND (info; h its handle, self
 * libkprof.so's phdr info): its GOT slots of kprof's symbols that its own
 * scope binds to what kprof's call on to, pointed at kprof's (got.c).
 * @return how many slots were changed. */
struct dl_phdr_info;
int kp_got_rebind_deep(const struct dl_phdr_info *info, void *h,
		       const struct dl_phdr_info *self);
/* ---- CPU sampling (cpu.c) ------------------------------------------------ */

struct kp_cpu_sample {
	uint64_t tsc;
	uint64_t weight; /* thread CPU ns since its previous sample */
	uint32_t tid;
	uint32_t stack;
};

/* Start sampling (KOTOBA_PROFILE_CPU=1): pick a signal, arm this thread. */
void kp_cpu_start(void);
/* The signal kprof samples with, 0 when not sampling. */
int kp_cpu_signal(void);
/* The app sets sig's action (reset: to SIG_DFL or SIG_IGN): if sig is
 * kprof's, sampling stops; a handler is warned about at once, a reset
 * (a child about to exec does that) only at exit, by kp_cpu_at_exit. */
void kp_cpu_step_aside(int sig, int reset);
/*
 * Two signals that come at one tick (kprof's CPU timer and the app's own,
 * an ITIMER_PROF as gperftools' profiler sets) are delivered together:
 * the second handler's context is the first handler's entry, and the
 * context the program was in is the first one's. Given a handler's
 * context uc: when it is the entry of `other` (kprof's sampling handler,
 * for the app's; the app's dispatcher, for kprof's), the context under
 * it, else uc.
 */
void *kp_sig_outer_context(void *uc, void (*other)(int, siginfo_t *, void *));
/* The dispatcher kprof puts in place of the app's handlers (signals.c). */
void kp_sig_dispatch(int sig, siginfo_t *si, void *uc);
/* kprof's handler of the signals that kill by default, in place of
 * SIG_DFL (signals.c): it ends the trace, then the signal kills. */
void kp_sig_fatal_install(void);
/* The trace ends as the process will, of sig (lifecycle.c). */
void kp_finish_signal(int sig);
/* kprof's CPU sampling handler (cpu.c). */
void kp_cpu_on_sample(int sig, siginfo_t *si, void *uc);
void kp_cpu_at_exit(void);
/* Writer: take the samples with tsc < wm (interning their stacks);
 * @return 1 if some remain below wm (buffer full). Then kp_cpu_next()
 * hands them out one by one, NULL at the end. */
int kp_cpu_collect(uint64_t wm);
const struct kp_cpu_sample *kp_cpu_next(void);
/* Samples dropped because a sample ring was full. */
uint64_t kp_cpu_lost(void);
/* Runs of SQLite statements the hook had no slot for, not recorded
 * (hook_sqlite.c): lost QUERY events. */
uint64_t kp_sqlite_lost_runs(void);

/* ---- lifecycle (lifecycle.c) --------------------------------------------- */

/* Initialise if needed; returns 1 when recording. Cheap when initialised.
 * caller: the return address of the interposed call that got here, or
 * NULL; a call from inside libunwind does not start kprof (see
 * lifecycle.c). Always inlined, so that in a hook it names the hook's
 * caller. */
int kp_init_slow(const void *caller);
static KP_ALWAYS_INLINE int kp_ready(void)
{
	int s = atomic_load_explicit(&kp.run, memory_order_acquire);
	if (KP_LIKELY(s == KP_ST_RUNNING))
		return 1;
	if (s == KP_ST_UNINIT)
		return kp_init_slow(__builtin_return_address(0));
	return 0;
}

/* Enter kprof from an app's call that records (the public API, a signal
 * sent): 1 with kp_tls.busy set (kp_busy_leave() when done), 0 when the
 * call must record nothing (not recording, or kprof's own call). */
static KP_ALWAYS_INLINE int kp_enter(void)
{
	if (!kp_ready() || kp_tls.busy || kp_tls.writer)
		return 0;
	kp_tls.busy = 1;
	return 1;
}

static inline int kp_query_want(unsigned hook)
{
	return !kp_tls.busy && !kp_tls.writer && kp_ready() && kp.cfg.query &&
	       (kp.cfg.query_hooks & hook);
}

#endif
