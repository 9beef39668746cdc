/* SPDX-License-Identifier: MIT */
/*
 * The writer thread: the one consumer of every ring. Each cycle it
 *   1. reads the clock, then every ring's head (acquire), choosing a time
 *      watermark W: at most the clock's reading, so that what is stamped
 *      while it reads the heads one by one waits for the next cycle.
 *      (Else thread A's ALLOC, published just after the writer read A's
 *      ring, could go a frame later than thread B's FREE of that block,
 *      published before the writer read B's: the analyzer would meet a
 *      free of a block not yet allocated.) And so that one cycle fits
 *      one frame, a ring with a backlog beyond its budget caps W at the
 *      timestamp of its first slot past the budget at a multiple of
 *      KP_RING_G (never inside a run: state.h). The last cycle, and the
 *      one before an exec, take everything;
 *   2. emits the modules and stacks published since the last cycle (read
 *      after the heads, so every stack an event uses is already visible);
 *   3. moves the events with ts < W from each ring into the frame, thread
 *      by thread (each run sorted by time), converting ticks to ns; the
 *      runs of memory events a thread encoded itself (state.h,
 *      kp_ev_run) are copied, but for their first event;
 *   4. emits LOST counts that changed, then compresses and writes the frame.
 * Frames are therefore ordered by time: all events in frame k precede
 * those in frame k+1 (but for an event whose thread was preempted between
 * taking its timestamp and publishing it, which the analyzer tolerates).
 *
 * It also owns the trace file: created 0600 with O_EXCL|O_NOFOLLOW (never
 * overwriting: a taken name gets a .1, .2 ... suffix), moved to a high fd
 * with O_CLOEXEC, and checked by inode before every write so that an app
 * that closes or dup2s over it (closefrom(3) in daemons) is noticed and the
 * file reopened, never written into the app's fd. All I/O is raw syscalls.
 * The file is opened O_APPEND: whichever fd writes (the writer's, an app
 * thread's at exit, one reopened by path), nothing is overwritten.
 *
 * The writer thread keeps a private fd table (unshare(CLONE_FILES)) holding
 * the trace fd, and stderr unless that is a pipe or a socket. While two threads share a table, Linux makes every
 * read/write/fsync of the app take and drop a reference on the file, and
 * lock the file position of a regular file (fdget's fast path is for a
 * table with one user): a second thread alone costs a single-threaded
 * app's I/O calls tens of ns each. The copies of the app's fds that
 * unshare gives the writer are closed at once, so a pipe or socket the
 * app closes still reaches EOF (closing a copy releases none of the app's
 * POSIX locks: their owner is the app's table, not the writer's).
 *
 * A cycle runs under `cycle_lock`, so an app thread that must flush now
 * (exit, _exit, exec, abort) runs the cycle itself rather than handing off.
 */
#include "state.h"
#include "codec.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "kpz.h"

#define FRAME_CAP (4u << 20)
/*
 * Slots a cycle takes, shared by the rings, at least CYCLE_SLOTS_MIN from
 * each: ~20,000 allocation events a frame (a slot of a run holds ~5),
 * whose merge fits a core's cache in the analyzer (frames of ~46,000 read
 * 10 to 15 % slower). A wake finds up to a quarter of a ring (state.h,
 * kp_ring_publish) and drains it in cycles of this size.
 */
#define CYCLE_SLOTS 4096u
#define CYCLE_SLOTS_MIN 2048u
#define MAX_RINGS 65536

static struct {
	pthread_mutex_t cycle_lock;
	pthread_t thread;
	int thread_started;
	_Atomic int stop;
	_Atomic int parked;     /* stopped for the app's last thread */
	uint64_t parked_flush;  /* kp_mono_ns() of the last kp_writer_sync
				 * or park (kp_writer_parked_tick) */
	struct kp_writer *kw;
	int fd;                 /* trace fd, -1 when none */
	struct kp_file_id id;   /* its identity, to notice closefrom/dup2 */
	char path[1200];        /* absolute path of the trace */
	int broken;             /* the file is gone: stop writing */
	int own_table;          /* the writer thread has its own fd table */
	int header_done;
	int forked;             /* this trace began in a fork child */
	uint64_t mult;          /* ns = (ticks - tsc0) * mult >> 32: one
				 * 64x64 multiply (mult < 2^33 for any
				 * clock above 500 MHz, < 2^64 above 1 Hz) */
	double tsc_hz;
	uint32_t stacks_out;    /* stacks 1..stacks_out are in the trace */
	uint32_t qtexts_out;    /* query texts 1..qtexts_out are too */
	uint32_t pynames_out;   /* Python frames 1..pynames_out are named */
	uint64_t modules_since; /* module change seq already written */
	uint64_t lost_out[KP_REC_TYPE_MAX + 1]; /* LOST counts written */
	uint64_t stack_drops_out;
	struct kp_ring **rings; /* scratch for a cycle */
	uint64_t *heads;
	uint8_t *closed;        /* ring was CLOSED before its head was read */
	/* the slot of the ring's run that was open when its head was read,
	 * and its len then (add_run) */
	uint64_t *snap_run;
	uint32_t *snap_len;
	struct kp_module_change *mchg; /* module changes of a cycle */
	unsigned mchg_cap;
	int final_done;
	/* an extension event's payload, reassembled (ext_to_rec) in whole
	 * slots: room for the last one's unused bytes */
	uint8_t ext_buf[KP_EXT_MAX_V * 8 + KP_MAX_STR_LEN +
			KP_EV_CONT_PAYLOAD];
	/* kp_writer_call: one request at a time, under call_lock */
	pthread_mutex_t call_lock;
	void (*call_fn)(void *);
	void *call_arg;
	_Atomic uint32_t call_seq, call_done;
} w = { .cycle_lock = PTHREAD_MUTEX_INITIALIZER,
	.call_lock = PTHREAD_MUTEX_INITIALIZER,
	.fd = -1 };

/* ---- the trace file ------------------------------------------------------ */

static long sys_open(const char *path, int flags, int mode)
{
	return syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

/*
 * Near the top of the fd limit, where the app's own fds (always the
 * lowest free) do not reach; but no higher than the top of the usual
 * limit, 1024. The kernel sizes a process's fd table to its highest fd,
 * and the writer thread copies the whole table (private_fd_table): under
 * a limit of 20,000 (a root shell here) that copy and closing it took
 * some 15 % of what kprof added to /bin/true, and in a container whose
 * limit is 1,048,576 the two tables would take 16 MiB.
 */
#define HIGH_FD_TOP 1024

int kp_high_fd(int fd)
{
	struct rlimit rl;
	long min = HIGH_FD_TOP - 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		/* Under a small limit, its last 8 (kprof holds 3: the trace
		 * and libunwind's pipe): a program run with `ulimit -n 64`
		 * got fds 3, 7, 8 for its first three, around kprof's. */
		if (rl.rlim_cur <= 16)
			min = fd;
		else if (rl.rlim_cur <= 128)
			min = (long)rl.rlim_cur - 8;
		else if (rl.rlim_cur < HIGH_FD_TOP)
			min = (long)rl.rlim_cur - 64;
	}
	long hi = syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, min);
	if (hi < 0)
		return fd;
	syscall(SYS_close, fd);
	return (int)hi;
}

/* Expand %p %e %t %% of the template into buf (absolute). */
static void expand_path(char *buf, size_t len)
{
	char exe[1024];
	const char *base = kp_self_exe(exe, sizeof(exe)) ? kp_base_name(exe) :
							     "unknown";
	size_t o = 0;
	const char *t = kp.cfg.output;
	if (t[0] != '/' && getcwd(buf, len - 2)) {
		o = strlen(buf);
		buf[o++] = '/';
	}
	for (; *t && o + 32 < len; t++) {
		if (t[0] == '%' && t[1]) {
			t++;
			if (*t == 'p')
				o += (size_t)snprintf(buf + o, len - o, "%d",
						      (int)kp.pid);
			else if (*t == 'e')
				o += (size_t)snprintf(buf + o, len - o, "%.64s",
						      base);
			else if (*t == 't')
				o += (size_t)snprintf(buf + o, len - o, "%llu",
						      (unsigned long long)(
							      kp.wall0 /
							      1000000000u));
			else
				buf[o++] = *t;
		} else {
			buf[o++] = *t;
		}
	}
	buf[o] = '\0';
}

/* Create the trace file under a name nobody has taken. */
static int open_trace(void)
{
	char base[1100];
	expand_path(base, sizeof(base));
	const char *dot = strrchr(base, '.');
	const char *slash = strrchr(base, '/');
	size_t stem = (dot && (!slash || dot > slash)) ? (size_t)(dot - base)
						       : strlen(base);
	for (int i = 0; i < 1000; i++) {
		if (i == 0)
			snprintf(w.path, sizeof(w.path), "%s", base);
		else
			snprintf(w.path, sizeof(w.path), "%.*s.%d%s",
				 (int)stem, base, i, base + stem);
		long fd = sys_open(w.path, O_WRONLY | O_CREAT | O_EXCL |
						   O_APPEND | O_NOFOLLOW |
						   O_CLOEXEC,
				   0600);
		if (fd >= 0) {
			w.fd = kp_high_fd((int)fd);
			kp_file_id(w.fd, &w.id);
			return 0;
		}
		if (errno != EEXIST) {
			kp_warn("cannot create trace '%s': %s; not profiling",
				w.path, strerror(errno));
			return -1;
		}
	}
	kp_warn("cannot find a free trace name near '%s'; not profiling", base);
	return -1;
}

/* Does fd (in the calling thread's table) name the trace file? */
static int is_trace(long fd)
{
	return kp_fd_is(fd, &w.id);
}

/* The trace opened again by its path: a new fd, -1 when the path no
 * longer leads to it. */
static long reopen_trace(void)
{
	long fd = sys_open(w.path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
			   0);
	if (fd >= 0 && !is_trace(fd)) {
		syscall(SYS_close, fd);
		fd = -1;
	}
	return fd;
}

/* Is w.fd still our file? If not, reopen it by path. */
static int check_fd(void)
{
	if (is_trace(w.fd))
		return 0;
	/* Our fd was closed, or now names one of the app's files: leave that
	 * fd alone and open the trace again. */
	long fd = reopen_trace();
	if (fd < 0)
		return -1;
	w.fd = kp_high_fd((int)fd);
	return 0;
}

/*
 * The trace cannot be written any more: stop recording. Producers waiting
 * for ring space must not wait for a writer that will never drain: with
 * writer_up cleared they drop, and the run state stops new events.
 */
static void give_up(void)
{
	w.broken = 1;
	atomic_store(&kp.run, KP_ST_OFF);
	atomic_store(&kp.writer_up, 0);
}

/*
 * A write past the file size limit (RLIMIT_FSIZE, `ulimit -f`) fails
 * with EFBIG and raises SIGXFSZ in the writing thread, whose default
 * action ends the process: /bin/true under `ulimit -f 1` died of it at
 * its exit, where its own thread writes the trace. So on an app's thread
 * (exit, exec, a forked child's header) kprof's writes run with SIGXFSZ
 * blocked, and one they raised is taken back before the mask is restored
 * (one pending before is the app's, and stays). The writer thread blocks
 * every signal already. Only a SIGXFSZ the app had blocked can be
 * pending before: one it had not was delivered. So the pending set is
 * asked for only then: a program in a seccomp sandbox may refuse
 * rt_sigpending (Firefox's content processes report it as a violation
 * at their exit).
 */
struct xfsz {
	int on;
	uint64_t old;
	int pending;
};

static void xfsz_hold(struct xfsz *x)
{
	x->on = !(w.thread_started && pthread_equal(pthread_self(), w.thread));
	if (!x->on)
		return;
	uint64_t set = 1ull << (SIGXFSZ - 1), now = 0;
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, &x->old, sizeof(set));
	if (x->old & set)
		syscall(SYS_rt_sigpending, &now, sizeof(now));
	x->pending = (now & set) != 0;
}

static void xfsz_release(struct xfsz *x, int efbig)
{
	if (!x->on)
		return;
	uint64_t set = 1ull << (SIGXFSZ - 1);
	if (efbig && !x->pending) {
		struct timespec zero = { 0, 0 };
		syscall(SYS_rt_sigtimedwait, &set, NULL, &zero, sizeof(set));
	}
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &x->old, NULL, sizeof(set));
}

/* All of iov[0..n) to the trace, across short writes; iov is changed. */
static int sink_writev(void *ctx, struct iovec *iov, int n)
{
	(void)ctx;
	if (w.broken || check_fd() != 0) {
		if (!w.broken)
			kp_warn("trace '%s' is gone; recording stops", w.path);
		give_up();
		return KP_EIO;
	}
	struct xfsz x;
	xfsz_hold(&x);
	while (n) {
		long k = syscall(SYS_writev, w.fd, iov, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int e = errno;
			xfsz_release(&x, e == EFBIG);
			kp_warn("cannot write trace '%s': %s; recording stops",
				w.path, strerror(e));
			give_up();
			return KP_EIO;
		}
		atomic_fetch_add_explicit(&kp_self_wchar, (uint64_t)k,
					  memory_order_relaxed);
		for (; n && (size_t)k >= iov->iov_len; iov++, n--)
			k -= (long)iov->iov_len;
		if (n) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= (size_t)k;
		}
	}
	xfsz_release(&x, 0);
	return 0;
}

static int sink_write(void *ctx, const void *buf, size_t n)
{
	struct iovec one = { (void *)buf, n };
	return sink_writev(ctx, &one, 1);
}

static const struct kp_sink sink = { sink_write, NULL, sink_writev };

/* ---- clock calibration and header ---------------------------------------- */

/* The interval a calibration takes (from kp.mono0 on), and the least
 * one for a trace that ends before it is over (see measure_tsc). */
#define CALIBRATE_NS 1000000
#define CALIBRATE_END_NS 20000

/* TSC ticks a second, from kp.mono0 to a point at least least ns later */
static double tsc_rate(uint64_t least)
{
	uint64_t t1, m1;
	do {
		kp_clock_pair(&t1, &m1);
	} while (m1 - kp.mono0 < least);
	return (double)(t1 - kp.tsc0) * 1e9 / (double)(m1 - kp.mono0);
}

/* ending: the trace ends with this cycle (exit, exec). */
static void measure_tsc(int ending)
{
	if (w.mult)
		return; /* a forked child keeps its parent's factor */
	if (!kp.use_tsc) {
		w.mult = (uint64_t)1 << 32;
		w.tsc_hz = 0;
		return;
	}
	/* At least 1 ms between the two points: with ~30 ns of jitter in each
	 * pairing of clock_gettime and rdtsc (kp_clock_pair: the closest of a
	 * few, so that an interrupt between the two reads does not count),
	 * the rate is within ~60 ppm (0.006 %, far inside the 1 % an I/O
	 * latency needs). A trace that ends sooner (a short program's exit
	 * or exec) needs no more than its own length: every event of it lies
	 * between the two points, so none is off by more than the jitter. It
	 * used to wait out the millisecond here, spinning: a fifth of the CPU
	 * samples of /bin/true under kprof. */
	w.tsc_hz = tsc_rate(ending ? CALIBRATE_END_NS : CALIBRATE_NS);
	w.mult = (uint64_t)((1e9 * 4294967296.0) / w.tsc_hz);
}

static void calibrate(int ending)
{
	measure_tsc(ending);
	/* threads encode their memory events into runs (state.h) with the
	 * factor, from now on */
	atomic_store_explicit(&kp.run_mult, w.mult, memory_order_relaxed);
}

static uint64_t to_ns(uint64_t ticks)
{
	return kp_ticks_to_ns(ticks, kp.tsc0, w.mult);
}

static uint64_t dur_ns(uint64_t ticks)
{
	return (uint64_t)(((unsigned __int128)ticks * w.mult) >> 32);
}

static int write_header(void)
{
	static char cmdline[65536], exe[1024], host[256];
	static const char *argv[KP_MAX_ARGV];
	const char *keys[32], *vals[32]; /* room for every KOTOBA_PROFILE_* pair */
	char scratch[4096];
	struct kp_header h;
	memset(&h, 0, sizeof(h));

	/* exe fits in 1023 bytes, under the format's string limit. */
	kp_self_exe(exe, sizeof(exe));
	long fd = sys_open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC, 0);
	size_t len = 0;
	if (fd >= 0) {
		long r;
		while (len < sizeof(cmdline) - 1 &&
		       (r = syscall(SYS_read, fd, cmdline + len,
				    sizeof(cmdline) - 1 - len)) > 0)
			len += (size_t)r;
		syscall(SYS_close, fd);
	}
	cmdline[len] = '\0';
	/* Every string must fit the format's limit: cut long arguments (a
	 * `sh -c` script, a compiler line) rather than lose the header. */
	uint32_t argc = 0;
	for (size_t i = 0; i < len && argc < KP_MAX_ARGV;) {
		size_t arglen = strlen(cmdline + i);
		argv[argc++] = cmdline + i;
		if (arglen >= KP_MAX_STR_LEN)
			cmdline[i + KP_MAX_STR_LEN - 1] = '\0';
		i += arglen + 1;
	}
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(host, sizeof(host), "%s", u.nodename);

	h.pid = kp.pid;
	h.ppid = kp.ppid;
	h.pgid = kp.pgid > 0 ? kp.pgid : 0;
	h.forked = w.forked;
	h.exe = exe;
	h.argv = argv;
	h.argc = argc;
	h.start_wall_ns = kp.wall0;
	h.start_mono_ns = kp.mono0;
	h.clock = kp.use_tsc ? "tsc" : "clock_gettime";
	/* before the calibration (the header written at start): the rate
	 * so far, as exact as a short trace's (informational: the events'
	 * times are converted by the writer) */
	h.tsc_hz = w.tsc_hz || !kp.use_tsc ? w.tsc_hz :
					     tsc_rate(CALIBRATE_END_NS);
	h.hostname = host;
	h.kprof_version = KP_VERSION;
	h.nconfig = kp_config_pairs(&kp.cfg, keys, vals, scratch,
				    sizeof(scratch));
	h.config_keys = keys;
	h.config_vals = vals;
	return kp_writer_header(w.kw, &h);
}

/* Write the header, once. */
static int header_once(void)
{
	if (w.header_done)
		return 0;
	int rc = write_header();
	if (rc != 0) {
		if (!w.broken)
			kp_warn("cannot write the trace header of '%s' (%s); "
				"recording stops", w.path, kp_strerror(rc));
		give_up();
		return -1;
	}
	w.header_done = 1;
	return 0;
}

/* Calibrate the clock (once) and write the header (once). */
static int ensure_header(int ending)
{
	if (!w.mult)
		calibrate(ending);
	return header_once();
}

/* ---- one cycle ----------------------------------------------------------- */

static void add_module(const struct kp_module_change *c)
{
	const struct kp_module *m = c->m;
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.ts = to_ns(kp_ticks());
	r.type = c->gone ? KP_REC_UNMODULE : KP_REC_MODULE;
	r.u.module.bias = m->bias;
	r.u.module.lo = m->lo;
	r.u.module.hi = m->hi;
	r.u.module.path = m->path;
	r.u.module.path_len = (uint32_t)strlen(m->path);
	r.u.module.build_id = m->build_id;
	r.u.module.build_id_len = m->build_id_len;
	kp_writer_add(w.kw, &r);
}

static void add_stack(uint32_t id)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_STACK;
	r.u.stack.id = id;
	r.u.stack.pcs = kp_stacktab_get(id, &r.u.stack.depth);
	kp_writer_add(w.kw, &r);
}

/* A Python frame's name (pystack.c), as a JIT's code is named. */
static void add_pyname(uint32_t entry)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_JIT_CODE;
	r.ts = to_ns(kp_ticks());
	r.tid = kp_tls.tid;
	r.u.jit.lo = kp_pystack_pc(entry);
	r.u.jit.size = 16;
	r.u.jit.name = kp_pystack_name(entry, &r.u.jit.name_len);
	kp_writer_add(w.kw, &r);
}

static void add_qtext(uint32_t id)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_QUERY_TEXT;
	r.u.qtext.id = id;
	r.u.qtext.text = kp_qtext_get(id, &r.u.qtext.len);
	kp_writer_add(w.kw, &r);
}

/* The module changes since the last cycle (nchg) into w.mchg. */
static unsigned take_module_changes(void)
{
	for (;;) {
		kp_modules_lock();
		unsigned n = kp_modules_changes(&w.modules_since, w.mchg,
						w.mchg_cap);
		kp_modules_unlock();
		if (n <= w.mchg_cap)
			return n;
		struct kp_module_change *bigger =
			kp_arena_alloc(2 * n * sizeof(*bigger));
		if (!bigger)
			return 0;
		kp_arena_free(w.mchg);
		w.mchg = bigger;
		w.mchg_cap = 2 * n;
	}
}

/* The continuation slot k (1..) of the event at slot t of ring r. */
static inline const struct kp_ev_cont *ev_cont(const struct kp_ring *r,
					       uint64_t t, uint64_t k)
{
	return (const struct kp_ev_cont *)&r->slots[(t + k) & r->mask];
}

/* The payload value i (from 0) of the event at slot t of ring r, when the
 * event has it (i < len / 8), else 0. */
static inline uint64_t ev_val(const struct kp_ring *r, uint64_t t,
			      unsigned i)
{
	const struct kp_ev *ev = &r->slots[t & r->mask];
	if ((i + 1) * 8 > ev->len)
		return 0;
	if (i < 2)
		return i ? ev->b : ev->a;
	unsigned off = i * 8 - KP_EV_HEAD_PAYLOAD;
	uint64_t v;
	memcpy(&v, ev_cont(r, t, 1 + off / KP_EV_CONT_PAYLOAD)->data +
			   off % KP_EV_CONT_PAYLOAD, 8);
	return v;
}

/* The event at slot t of ring r, of thread tid, of a type below the
 * extension types. The memory events set every field of their type (no
 * memset of the whole record, whose union is sized for extension
 * records: it showed in the writer's profile); the rare others start
 * from zero. */
static void ev_to_rec(const struct kp_ring *r, uint64_t t, uint32_t tid,
		      struct kp_rec *rec)
{
	const struct kp_ev *ev = &r->slots[t & r->mask];
	if (ev->type > KP_REC_REALLOC || ev->type < KP_REC_ALLOC)
		memset(rec, 0, sizeof(*rec));
	rec->type = ev->type;
	rec->kind = ev->kind;
	rec->pad = 0;
	rec->tid = tid;
	rec->ts = to_ns(ev->tsc);
	switch (ev->type) {
	case KP_REC_ALLOC:
		rec->u.alloc.ptr = ev->a;
		rec->u.alloc.size = ev->b;
		rec->u.alloc.align = ev_val(r, t, 2);
		rec->u.alloc.stack = ev->stack;
		break;
	case KP_REC_FREE:
		rec->u.free.ptr = ev->a;
		break;
	case KP_REC_REALLOC:
		rec->u.realloc.old_ptr = ev->a;
		rec->u.realloc.new_ptr = ev->b;
		rec->u.realloc.size = ev_val(r, t, 2);
		rec->u.realloc.dur = dur_ns(ev_val(r, t, 3));
		rec->u.realloc.stack = ev->stack;
		break;
	case KP_REC_THREAD_NAME:
		rec->tid = ev->stack; /* the named thread (kp_ring_thread_name) */
		/* fall through */
	case KP_REC_THREAD_START:
		rec->u.thread.name = (const char *)&ev->a;
		rec->u.thread.name_len = (uint32_t)strnlen((const char *)&ev->a,
							   16);
		break;
	default:
		break;
	}
}

static KP_ALWAYS_INLINE int is_mem(unsigned type)
{
	return type >= KP_REC_ALLOC && type <= KP_REC_REALLOC;
}

/* Events encoded into b with the delta state in enc (a copy of *b->enc,
 * kept in registers) are done: the state goes back to the encoder, the n
 * events, the last at ts, into the frame (kp_writer_events_close). */
static void events_done(struct kp_evbuf *b, const struct kp_enc *enc,
			uint64_t n, uint64_t ts)
{
	b->enc->last_ts = enc->last_ts;
	b->enc->last_ptr = enc->last_ptr;
	kp_writer_events_close(w.kw, b, n, ts);
}

/*
 * The run of ALLOC, FREE and REALLOC events of thread tid from slot t of
 * ring r on, below head and the watermark, encoded straight into the open
 * frame (kp_writer_events_open): the bulk of every trace, without a
 * struct kp_rec and a kp_writer_add() call per event.
 * @return the slot after the last event taken (past t).
 */
static uint64_t add_mem_run(const struct kp_ring *r, uint64_t t,
			    uint64_t head, uint64_t wm, uint32_t tid)
{
	const struct kp_ev *ev = &r->slots[t & r->mask];
	struct kp_evbuf b;

	if (kp_writer_events_open(w.kw, tid, to_ns(ev->tsc), &b) < 0)
		/* the writer failed for good: dropped, as by kp_writer_add */
		return t + 1 + kp_ev_nx(ev->len);
	/* Everything the loop reads, in locals: its byte stores may alias
	 * any memory, so fields read through pointers (the delta state, the
	 * ring's mask, the clock's scale) would be loaded again after each.
	 * The delta state goes back to the encoder at the end. */
	struct kp_enc enc = *b.enc;
	const struct kp_ev *slots = r->slots;
	const uint64_t mask = r->mask, tsc0 = kp.tsc0, mult = w.mult;
	uint8_t *p = b.p, *const end = b.end;
	uint64_t n = 0, ts;
	for (;;) {
		/* the slots ahead were written on another core: fetch them
		 * before they are needed. The load of an event's tsc is the
		 * loop's largest stall in perf; a line comes from the other
		 * core in about the time of 20 events here, so the fetch runs
		 * 96 slots (48 lines) ahead: 16 left most of the stall
		 * (alloc_bench, stacks off, 31 interleaved runs: 1.86x -> 1.73x
		 * wall, the writer's CPU samples -4 to -8 %; 192 no better) */
		__builtin_prefetch(&slots[(t + 96) & mask]);
		ts = kp_ticks_to_ns(ev->tsc, tsc0, mult);
		if (KP_LIKELY(ev->len <= KP_EV_HEAD_PAYLOAD)) {
			/* FREE, or a malloc's ALLOC: one slot */
			p = kp_enc_mem(&enc, p, ev->type, ev->kind, ts, ev->a,
				       ev->b, 0, 0, ev->stack);
			t++;
		} else {
			uint64_t c = ev_val(r, t, 2), d = ev_val(r, t, 3);
			p = kp_enc_mem(&enc, p, ev->type, ev->kind, ts, ev->a,
				       ev->b, c,
				       ev->type == KP_REC_REALLOC ? dur_ns(d) : 0,
				       ev->stack);
			t += 1 + kp_ev_nx(ev->len);
		}
		n++;
		if (t >= head || p >= end)
			break;
		ev = &slots[t & mask];
		if (ev->tsc >= wm || !is_mem(ev->type))
			break;
	}
	b.p = p;
	events_done(&b, &enc, n, ts); /* ts: the last one's */
	return t;
}

/*
 * The run at slot t of ring r (state.h, kp_ev_run), of thread tid, as its
 * len (bytes, events, closed) says, read before the cycle's stacks were
 * (so every stack of those events is out already): from where the writer
 * stopped in it last time (r->run_off) on, its events below the watermark
 * wm (ticks) go into the open frame, each decoded and encoded again, or,
 * for a run closed and below wm, the first of them so and the rest as the
 * thread encoded them (their deltas follow from the first). *more is set
 * when events below its head wait past wm_more (the budget's watermark,
 * step 1 at the top). @return the slot after the run
 * once all of it is taken, else t (the caller stops at it).
 */
_Static_assert(KP_ENC_MAX_REC >= KP_RUN_MAX + 4 * sizeof(struct kp_ev) +
			       KP_ENC_MAX_EVENT,
	       "a run's bytes fit past a frame's fill mark");
static uint64_t add_run(struct kp_ring *r, uint64_t t, uint32_t len,
			uint64_t wm, uint64_t wm_more, uint32_t tid, int *more)
{
	const struct kp_ev_run *hd =
		(const struct kp_ev_run *)&r->slots[t & r->mask];
	int no_stacks = kp.cfg.stack_depth == 0;
	int closed = (len & KP_RUN_CLOSED) != 0;
	uint32_t nev = len >> 16 & 0x7fff;
	const uint8_t *data = (const uint8_t *)(hd + 1);
	const uint8_t *p = data + r->run_off, *end = data + (len & 0xffff);
	uint64_t ts = r->run_off ? r->run_ns : to_ns(hd->tsc);
	uint64_t ptr = r->run_off ? r->run_ptr : 0;
	uint64_t wm_ns = wm == UINT64_MAX ? UINT64_MAX : to_ns(wm);
	uint64_t more_ns = wm_more == UINT64_MAX ? UINT64_MAX : to_ns(wm_more);
	int whole = closed && hd->last_tsc < wm;
	struct kp_evbuf b = { 0 };
	struct kp_enc enc = { 0 };
	int open = 0;
	uint64_t n = 0;

	while (p < end) {
		struct kp_mem_rec m;
		uint64_t ts1 = ts, ptr1 = ptr;
		const uint8_t *q = kp_blk_get(p, end, &ts1, &ptr1, &m,
					      no_stacks);
		if (!q) { /* never: the thread's own encoding */
			p = end;
			break;
		}
		if (!whole && m.ts >= wm_ns) {
			if (m.ts >= more_ns)
				*more = 1;
			break;
		}
		if (!open) {
			if (kp_writer_events_open(w.kw, tid, m.ts, &b) < 0) {
				/* the writer failed for good: dropped, as by
				 * kp_writer_add */
				p = end;
				break;
			}
			enc = *b.enc;
			open = 1;
		}
		b.p = kp_enc_mem(&enc, b.p, m.type, m.kind, m.ts, m.a, m.b,
				 m.c, m.d, m.stack);
		n++;
		p = q;
		ts = ts1;
		ptr = ptr1;
		if (whole) {
			/* The rest as it is: at most KP_RUN_MAX bytes and a
			 * little, which the frame's buffer has room for past
			 * its end (kp_writer_events_open). */
			memcpy(b.p, p, (size_t)(end - p));
			b.p += end - p;
			n = nev - r->run_cnt;
			p = end;
			ts = to_ns(hd->last_tsc);
			ptr = hd->last_ptr;
			enc.last_ts = ts;
			enc.last_ptr = ptr;
			break;
		}
		if (b.p >= b.end) {
			events_done(&b, &enc, n, ts);
			r->run_cnt += (uint32_t)n;
			n = 0;
			open = 0;
		}
	}
	if (open) {
		events_done(&b, &enc, n, ts);
		r->run_cnt += (uint32_t)n;
	}
	if (closed && p == end) {
		r->run_off = r->run_cnt = 0;
		return t + hd->nslots;
	}
	r->run_off = (uint32_t)(p - data);
	r->run_ns = ts;
	r->run_ptr = ptr;
	return t;
}

/*
 * An extension event at slot t of ring r (state.h), of thread tid: its
 * payload reassembled from the head and continuation slots into
 * w.ext_buf, which the record points into until it is added. The
 * record's v[] past the type's nv values is left as it is: nothing reads
 * it (kp_enc_ext_direct encodes nv values).
 */
static void ext_to_rec(const struct kp_ring *r, uint64_t t, uint32_t tid,
		       struct kp_rec *rec)
{
	const struct kp_ev *ev = &r->slots[t & r->mask];
	struct kp_ext_layout l = kp_ext_layout(ev->type);
	size_t vbytes = (size_t)l.nv * 8, len = ev->len;

	rec->type = ev->type;
	rec->kind = ev->kind;
	rec->pad = 0;
	rec->tid = tid;
	rec->ts = to_ns(ev->tsc);
	rec->u.ext.stack = ev->stack;
	rec->u.ext.str = NULL;
	rec->u.ext.str_len = 0;
	int packed = ev->type == KP_REC_QUERY && len == KP_QC_NV * 8;
	if (packed)
		vbytes = len; /* kp_qc_unpack below */
	else if (len > vbytes + KP_MAX_STR_LEN || len < vbytes)
		len = vbytes; /* cannot happen: the producer wrote len */
	/* whole slots, fixed-size copies (no call): ext_buf has room for
	 * the last one's bytes past len, which are never read */
	memcpy(w.ext_buf, &ev->a, KP_EV_HEAD_PAYLOAD);
	for (size_t got = KP_EV_HEAD_PAYLOAD, k = 1; got < len; k++) {
		memcpy(w.ext_buf + got, ev_cont(r, t, k)->data,
		       KP_EV_CONT_PAYLOAD);
		got += KP_EV_CONT_PAYLOAD;
	}
	/* v[] whole (fixed size): the values past nv are never read */
	_Static_assert(sizeof(rec->u.ext.v) <= sizeof(w.ext_buf),
		       "a whole v[] from ext_buf");
	if (packed) {
		int64_t q[KP_QC_NV];
		memcpy(q, w.ext_buf, sizeof(q));
		kp_qc_unpack(rec->u.ext.v, q);
	} else {
		memcpy(rec->u.ext.v, w.ext_buf, sizeof(rec->u.ext.v));
	}
	if (l.has_str) {
		rec->u.ext.str = (const char *)w.ext_buf + vbytes;
		rec->u.ext.str_len = (uint32_t)(len - vbytes);
	}
	for (unsigned m = l.dur_mask & ((1u << l.nv) - 1); m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctz(m);
		if (rec->u.ext.v[i] > 0)
			rec->u.ext.v[i] = (int64_t)dur_ns(
				(uint64_t)rec->u.ext.v[i]);
	}
}

static void emit_lost(void)
{
	uint64_t tot[KP_REC_TYPE_MAX + 1] = { 0 };
	for (struct kp_ring *r = atomic_load(&kp.rings); r; r = r->next)
		for (int t = 0; t <= KP_REC_TYPE_MAX; t++)
			tot[t] += atomic_load_explicit(&r->lost[t],
						       memory_order_relaxed);
	tot[KP_REC_CPU_SAMPLE] += kp_cpu_lost();
	tot[KP_REC_QUERY] += kp_sqlite_lost_runs();
	for (int t = 0; t <= KP_REC_TYPE_MAX; t++) {
		/* Rings freed after a fork restart from zero; counts only grow
		 * within one trace. */
		if (tot[t] <= w.lost_out[t])
			continue;
		struct kp_rec r;
		memset(&r, 0, sizeof(r));
		r.type = KP_REC_LOST;
		r.u.lost.what = (uint32_t)t;
		r.u.lost.count = tot[t];
		kp_writer_add(w.kw, &r);
		w.lost_out[t] = tot[t];
	}
	uint64_t sd = kp_stacktab_dropped();
	if (sd > w.stack_drops_out) {
		struct kp_rec r;
		memset(&r, 0, sizeof(r));
		r.type = KP_REC_LOST;
		r.u.lost.what = KP_REC_STACK;
		r.u.lost.count = sd;
		kp_writer_add(w.kw, &r);
		w.stack_drops_out = sd;
	}
}

/* CPU samples taken by kp_cpu_collect() (cpu.c). */
static void emit_cpu_samples(void)
{
	const struct kp_cpu_sample *s;
	while ((s = kp_cpu_next()) != NULL) {
		struct kp_rec r;
		memset(&r, 0, sizeof(r));
		r.type = KP_REC_CPU_SAMPLE;
		r.tid = s->tid;
		r.ts = to_ns(s->tsc);
		r.u.ext.stack = s->stack;
		r.u.ext.v[KP_CPU_WEIGHT] = (int64_t)s->weight;
		kp_writer_add(w.kw, &r);
	}
}

/* The clock, read before any load that follows: rdtsc is not ordered
 * with later loads unless an lfence follows it (Intel SDM, RDTSC). */
static uint64_t ticks_then_loads(void)
{
	uint64_t t = kp_ticks();
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_lfence();
#endif
	return t;
}

/* @return 1 when some ring still has events past the budget's watermark. */
static int cycle(int final, int reason, int64_t status, const char *exec_path)
{
	/* the trace ends with this cycle (exit, or exec if it succeeds) */
	int ending = final || exec_path;
	if (!w.kw || w.broken)
		return 0;
	if (ensure_header(ending) != 0)
		return 0;

	/* 1. the clock, heads and the watermark */
	uint64_t now = ending ? UINT64_MAX : ticks_then_loads();
	unsigned nr = 0;
	for (struct kp_ring *r = atomic_load(&kp.rings); r && nr < MAX_RINGS;
	     r = r->next) {
		/* State first, then head: a ring seen CLOSED here has all its
		 * events below the head read next (its thread pushed them
		 * before closing it). */
		int st = atomic_load_explicit(&r->state, memory_order_acquire);
		if (st == KP_RING_FREE)
			continue;
		w.rings[nr] = r;
		w.closed[nr] = st == KP_RING_CLOSED;
		w.heads[nr] = atomic_load_explicit(&r->head,
						   memory_order_acquire);
		/* Its open run's len, now: the writer takes that run's events
		 * up to here only, whose stacks are published already (read
		 * below). Every other run below the head was closed before
		 * open_run was read (its thread closes one before it opens
		 * the next, and a run is open_run before its head is
		 * published). */
		uint64_t o = atomic_load_explicit(&r->open_run,
						  memory_order_acquire);
		w.snap_run[nr] = KP_NO_RUN;
		if (o < w.heads[nr]) {
			const struct kp_ev_run *hd =
				(const struct kp_ev_run *)&r->slots[o & r->mask];
			w.snap_len[nr] = atomic_load_explicit(
				&hd->len, memory_order_acquire);
			w.snap_run[nr] = o;
		}
		nr++;
	}
	uint64_t budget = final ? UINT64_MAX : CYCLE_SLOTS / (nr ? nr : 1);
	if (budget < CYCLE_SLOTS_MIN)
		budget = CYCLE_SLOTS_MIN;
	uint64_t wm = UINT64_MAX;
	for (unsigned i = 0; i < nr; i++) {
		const struct kp_ring *r = w.rings[i];
		uint64_t t = atomic_load_explicit(&r->tail,
						  memory_order_relaxed);
		/* the first slot budget on at a multiple of KP_RING_G: an
		 * event's head or continuation, which has its tsc (not a
		 * run's bytes) */
		if (w.heads[i] - t <= budget)
			continue;
		uint64_t at = (t + budget + r->gmask) & ~r->gmask;
		if (w.heads[i] > at) {
			const struct kp_ev *e = &r->slots[at & r->mask];
			if (e->tsc < wm)
				wm = e->tsc;
		}
	}
	/* past the budget: a cycle more at once; past now: at the next */
	uint64_t wm_more = wm;
	if (now < wm)
		wm = now;

	/* 2. modules and stacks, in the order they were published: each
	 * module change notes how many stacks existed when it happened, so a
	 * stack from a library that was then dlclosed comes before the
	 * UNMODULE, and one from a library loaded at the same address after
	 * it. The stack count is read after the heads (every event seen uses
	 * a counted stack) and before the module changes (every counted
	 * stack's modules were scanned before it was published). */
	int cpu_more = kp_cpu_collect(wm); /* interns: before the count */
	uint32_t ns = kp_stacktab_count();
	unsigned nchg = take_module_changes(), ci = 0;
	for (uint32_t id = w.stacks_out + 1; id <= ns; id++) {
		while (ci < nchg && w.mchg[ci].stacks < id)
			add_module(&w.mchg[ci++]);
		add_stack(id);
	}
	while (ci < nchg)
		add_module(&w.mchg[ci++]);
	w.stacks_out = ns;
	/* query texts, read after the heads too: every text an event below
	 * them names is counted (qtext.c) */
	uint32_t nq = kp_qtext_count();
	for (uint32_t id = w.qtexts_out + 1; id <= nq; id++)
		add_qtext(id);
	w.qtexts_out = nq;
	/* Python frames' names, read after the heads as well */
	uint32_t np = kp_pystack_enabled ? kp_pystack_count() : 0;
	for (uint32_t e = w.pynames_out + 1; e <= np; e++)
		add_pyname(e);
	w.pynames_out = np;

	/* 3. events below the watermark, ring by ring */
	int more = 0;
	for (unsigned i = 0; i < nr; i++) {
		struct kp_ring *r = w.rings[i];
		uint64_t t = atomic_load_explicit(&r->tail,
						  memory_order_relaxed);
		/* the ring's owner; in the shared ring, KP_EV_TID slots say */
		uint32_t tid = r->tid;
		while (t < w.heads[i]) {
			const struct kp_ev *ev = &r->slots[t & r->mask];
			if (ev->tsc >= wm) {
				more |= ev->tsc >= wm_more;
				break;
			}
			if (KP_LIKELY(is_mem(ev->type))) {
				t = add_mem_run(r, t, w.heads[i], wm, tid);
				continue;
			}
			if (ev->type == KP_EV_RUN) {
				const struct kp_ev_run *hd =
					(const struct kp_ev_run *)ev;
				uint32_t len =
					t == w.snap_run[i] ?
						w.snap_len[i] :
						atomic_load_explicit(
							&hd->len,
							memory_order_acquire);
				uint64_t u = add_run(r, t, len, wm, wm_more,
						     tid, &more);
				if (u == t)
					break; /* its thread adds to it */
				t = u;
				continue;
			}
			if (ev->type == KP_EV_TID) {
				tid = (uint32_t)ev->a;
				t++;
				continue;
			}
			struct kp_rec rec;
			if (ev->type >= KP_REC_EXT_MIN)
				ext_to_rec(r, t, tid, &rec);
			else
				ev_to_rec(r, t, tid, &rec);
			kp_writer_add(w.kw, &rec);
			t += 1 + kp_ev_nx(ev->len);
		}
		/* sequentially consistent, then waiters read: see
		 * ring.c, wait_for_space */
		atomic_store(&r->tail, t);
		if (KP_UNLIKELY(atomic_load(&r->waiters))) {
			atomic_fetch_add(&r->space_seq, 1);
			syscall(SYS_futex, &r->space_seq, FUTEX_WAKE_PRIVATE,
				INT32_MAX, NULL, NULL, 0);
		}
		/* A ring closed before its head was read holds nothing more:
		 * its thread pushed its last event before closing it. */
		if (w.closed[i] && t == w.heads[i] && r != kp.shared)
			atomic_store_explicit(&r->state, KP_RING_FREE,
					      memory_order_release);
	}

	emit_cpu_samples();
	more |= cpu_more;

	/* 4. resources, counts, the end, the frame; the end only with the
	 * last cycle of an exit or exec, which takes as many as the rings'
	 * events need (an exec's are not all in one: it wrote an EXEC and an
	 * END in each, 20 of them after 20,000 writes) */
	int last = ending && !more;
	kp_snapshot_write(w.kw, to_ns(kp_ticks()), last);
	emit_lost();
	if (last) {
		struct kp_rec r;
		memset(&r, 0, sizeof(r));
		r.ts = to_ns(kp_ticks());
		r.tid = kp_tls.tid;
		kp_jitmap_write(w.kw, r.ts, r.tid, final);
		if (exec_path) {
			r.type = KP_REC_EXEC;
			r.u.exec.path = exec_path;
			r.u.exec.path_len = (uint32_t)strnlen(exec_path,
							      KP_MAX_STR_LEN);
			kp_writer_add(w.kw, &r);
		}
		r.type = KP_REC_END;
		r.kind = (uint8_t)reason;
		r.u.end.status = status;
		kp_writer_add(w.kw, &r);
	}
	kp_writer_flush(w.kw);
	return more;
}

/* ---- the thread ---------------------------------------------------------- */

uint64_t kp_writer_cpu_ns(void)
{
	clockid_t cid;
	struct timespec ts;
	if (!w.thread_started || pthread_getcpuclockid(w.thread, &cid) != 0 ||
	    clock_gettime(cid, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Run a pending kp_writer_call request, if any (writer thread only). */
static void serve_call(void)
{
	uint32_t seq = atomic_load_explicit(&w.call_seq, memory_order_acquire);
	if (seq == atomic_load_explicit(&w.call_done, memory_order_relaxed))
		return;
	w.call_fn(w.call_arg);
	atomic_store_explicit(&w.call_done, seq, memory_order_release);
	syscall(SYS_futex, &w.call_done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void kp_writer_call(void (*fn)(void *), void *arg)
{
	if (!w.thread_started || pthread_equal(pthread_self(), w.thread))
		return;
	pthread_mutex_lock(&w.call_lock);
	w.call_fn = fn;
	w.call_arg = arg;
	uint32_t seq = atomic_load(&w.call_seq) + 1;
	atomic_store_explicit(&w.call_seq, seq, memory_order_release);
	kp_writer_wake();
	for (;;) {
		uint32_t done = atomic_load_explicit(&w.call_done,
						     memory_order_acquire);
		if (done == seq || !atomic_load(&kp.writer_up))
			break;
		struct timespec ts = { 0, 10000000 };
		syscall(SYS_futex, &w.call_done, FUTEX_WAIT_PRIVATE, done, &ts,
			NULL, 0);
	}
	pthread_mutex_unlock(&w.call_lock);
}

/* Close fds [lo, hi] of the calling thread's table but `keep`. */
static void close_but(unsigned lo, unsigned hi, int keep)
{
	if (keep >= 0 && (unsigned)keep >= lo && (unsigned)keep <= hi) {
		if ((unsigned)keep > lo)
			syscall(SYS_close_range, lo, (unsigned)keep - 1, 0u);
		if ((unsigned)keep < hi)
			syscall(SYS_close_range, (unsigned)keep + 1, hi, 0u);
	} else if (lo <= hi) {
		syscall(SYS_close_range, lo, hi, 0u);
	}
}

/* The writer's own fd table (the top of the file says why), holding the
 * trace and stderr if that has no EOF to keep from a reader (diag.c).
 * Without unshare (seccomp, old kernel) it shares the app's, as before. */
static void private_fd_table(void)
{
	if (syscall(SYS_unshare, CLONE_FILES) != 0)
		return;
	w.own_table = 1;
	struct stat st;
	int err_ok = syscall(SYS_fstat, 2, &st) == 0 &&
		     !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode);
	close_but(0, 1, -1);
	if (!err_ok) {
		syscall(SYS_close, 2);
		kp_warn_deferred = 1;
	}
	close_but(3, ~0u, w.fd);
}

/*
 * The writer runs SCHED_BATCH when it would run SCHED_OTHER (inherited
 * from the thread that started it): the same share of the CPU, but a
 * wake-up does not preempt the thread running on that core (the kernel
 * leaves batch tasks' preemption to the tick). When the app's threads
 * keep every core busy, a poke from a ring (state.h, kp_ring_publish)
 * otherwise switched one of them out at once, and back after the cycle:
 * with this, alloc_bench (2 threads, 2 cores) switches context ~115
 * times a run instead of ~250. Its wall time moved within the noise:
 * stacks off 1.50x against 1.53x, 1.50x against 1.52x and 1.52x against
 * 1.52x in three sets of 61 interleaved rounds; stacks on 2.11x against
 * 2.10x. What it buys is a program whose threads are not preempted each
 * time kprof's is woken. The rings hold many milliseconds of events, so
 * the wait for a tick costs nothing; with an idle core the writer runs
 * there at once as before. Any other policy (SCHED_IDLE, real-time) is
 * the app's choice and is kept; so is a refusal (seccomp).
 */
static void writer_policy(void)
{
	struct sched_param sp = { 0 };
	if (sched_getscheduler(0) == SCHED_OTHER)
		(void)sched_setscheduler(0, SCHED_BATCH, &sp);
}

/* Sleep up to ns, or until kp_writer_wake() bumps kp.wake_seq past seq. */
static void wait_wake(uint32_t seq, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000),
			       (long)(ns % 1000000000) };
	syscall(SYS_futex, &kp.wake_seq, FUTEX_WAIT_PRIVATE, seq, &ts, NULL, 0);
}

/* Sleep until CALIBRATE_NS after start, or until stopped. */
static void wait_calibration(void)
{
	for (;;) {
		uint32_t seq = atomic_load(&kp.wake_seq);
		uint64_t now = kp_mono_ns();
		if (atomic_load(&w.stop) || now - kp.mono0 >= CALIBRATE_NS)
			return;
		wait_wake(seq, CALIBRATE_NS - (now - kp.mono0));
	}
}

/* How long the writer sleeps until its next flush: FLUSH_MS, but in the
 * process's first 4 x FLUSH_MS a quarter of its age (at least 1 ms), so
 * that a process killed young (a pool's worker, terminated; a command
 * that timeout(1) ends) loses at most the last fifth of its life, where
 * one full interval was all of it. About 30 flushes more in all. */
static uint64_t flush_wait_ns(void)
{
	uint64_t full = (uint64_t)kp.cfg.flush_ms * 1000000;
	uint64_t quarter = (kp_mono_ns() - kp.mono0) / 4;
	if (quarter < CALIBRATE_NS)
		quarter = CALIBRATE_NS;
	return quarter < full ? quarter : full;
}

static void *writer_main(void *arg)
{
	(void)arg;
	kp_tls.writer = 1;
	kp_tls.busy = 1;
	writer_policy(); /* before the name, which tests wait for */
	private_fd_table(); /* likewise (tests/apps/chrootjail.c) */
	prctl(PR_SET_NAME, "kprof-writer", 0, 0, 0);
	/* The clock calibrated once it can be (1 ms after start), not at the
	 * first flush: a fork child takes its parent's factor and writes its
	 * header as fork returns, so that one killed at once leaves a trace
	 * that reads as truncated (kp_writer_after_fork_child). The wait is a
	 * sleep that the end of the process cuts short (kp_writer_sync wakes
	 * this thread), not a spin on the clock with the lock held, which a
	 * short program's exit waited for. Unless a cycle (exit, exec, a
	 * fork's) has calibrated it already. */
	wait_calibration();
	pthread_mutex_lock(&w.cycle_lock);
	if (!w.mult && !atomic_load(&w.stop))
		calibrate(0);
	pthread_mutex_unlock(&w.cycle_lock);
	while (!atomic_load(&w.stop)) {
		uint32_t seq = atomic_load(&kp.wake_seq);
		atomic_store(&kp.writer_sleeping, 1);
		/* (a broken trace takes no more snapshots) */
		uint64_t snap = w.kw && !w.broken ?
			kp_snapshot_wait_ns(to_ns(kp_ticks())) : UINT64_MAX;
		uint64_t flush = flush_wait_ns();
		wait_wake(seq, snap < flush ? snap : flush);
		atomic_store(&kp.writer_sleeping, 0);
		if (KP_UNLIKELY(kp_writer_alone()))
			break; /* glibc then calls exit(0) here */
		serve_call();
		int more = 1;
		while (more && !atomic_load(&w.stop)) {
			pthread_mutex_lock(&w.cycle_lock);
			more = w.final_done ? 0 : cycle(0, 0, 0, NULL);
			pthread_mutex_unlock(&w.cycle_lock);
			serve_call();
		}
	}
	serve_call();
	return NULL;
}

static int spawn_thread(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	sigfillset(&all);
	/* A small stack: the deepest path (zstd compressing a frame) needs a
	 * few KiB, and glibc's default 8 MiB counts against the commit limit
	 * of a system that does not overcommit. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	/* The writer must never take the app's signals. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&w.thread, &attr, writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		kp_warn("cannot start the writer thread; not profiling");
		return -1;
	}
	w.thread_started = 1;
	atomic_store(&kp.writer_up, 1);
	return 0;
}

static int prepare_output(void)
{
	if (!w.rings) {
		w.rings = kp_arena_alloc(MAX_RINGS * sizeof(*w.rings));
		w.heads = kp_arena_alloc(MAX_RINGS * sizeof(*w.heads));
		w.closed = kp_arena_alloc(MAX_RINGS * sizeof(*w.closed));
		w.snap_run = kp_arena_alloc(MAX_RINGS * sizeof(*w.snap_run));
		w.snap_len = kp_arena_alloc(MAX_RINGS * sizeof(*w.snap_len));
		if (!w.rings || !w.heads || !w.closed || !w.snap_run ||
		    !w.snap_len)
			return -1;
	}
	if (open_trace() != 0)
		return -1;
	if (kp_writer_create(&w.kw, &kp.alloc, &sink, kp.cfg.zstd_level,
			     FRAME_CAP) != 0) {
		kp_warn("cannot create the trace encoder; not profiling");
		return -1;
	}
	/* Without stacks: blocks without the field, and zstd's literals
	 * raw unless a level was asked for. Its entropy coding made those
	 * bytes 20 % smaller for ~11 ns an event of the writer's time, a
	 * fifth of kprof's cost on alloc_bench (kprof(7), ZSTD_LEVEL). With
	 * them raw, zstd's search made alloc_bench's frames no smaller at
	 * all: such frames are stored.
	 * Frames under 1 KiB are stored as they are: a process that ends at
	 * once (each program of a shell script) never builds zstd's
	 * workspace, 11 of the ~100 page faults kprof added to the start of
	 * /bin/true here, and an idle process's flushes (its resource
	 * snapshot) skip zstd's per-frame work, for ~30 bytes a frame. */
	unsigned opt = KP_WRITER_STORE_SMALL;
	if (kp.cfg.stack_depth == 0)
		opt |= KP_WRITER_NO_STACKS;
	if (kp.cfg.zstd_raw)
		opt |= KP_WRITER_RAW_LITERALS | KP_WRITER_STORE_INCOMPRESSIBLE;
	if (kp_writer_options(w.kw, opt) != 0)
		kp_warn("zstd refused raw literals; compressing them");
	return 0;
}

/* Giving up at the start: the trace file kprof made, empty or with its
 * header only, is removed rather than left behind with nothing recorded;
 * its fd is closed. */
static void drop_output(void)
{
	if (w.fd < 0)
		return;
	if (is_trace(w.fd)) /* empty, or its header only */
		syscall(SYS_unlink, w.path);
	syscall(SYS_close, w.fd);
	w.fd = -1;
}

int kp_writer_start(void)
{
	/* The header at once, before the writer thread calibrates the clock
	 * (1 ms on): a process killed sooner (a pipeline's writer
	 * dead of SIGPIPE, a crash at start) leaves a trace that reads as
	 * truncated, not an empty file that kprof-analyze refuses, and with
	 * it every trace given beside it. */
	if (prepare_output() == 0 && header_once() == 0 && spawn_thread() == 0)
		return 0;
	drop_output();
	return -1;
}

/* Wait for the writer thread to end. pthread_join is a cancellation
 * point: an app thread with a cancellation pending (one that calls exit
 * after another thread cancelled it) would leave kprof's exit path there,
 * and the process would not end. */
static void join_writer(void)
{
	int old;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	pthread_join(w.thread, NULL);
	pthread_setcancelstate(old, NULL);
}

/*
 * Only the writer thread can still write the trace: the app has closed
 * the trace's fd (or put a file of its own at its number) after a chroot
 * that took the trace's path out of reach (a daemon that chroots, then
 * sweeps its fds), so an app thread can neither write it nor open it
 * again; the writer's own table still holds it. (Swept before the chroot,
 * it is opened again by path at the chroot: kp_writer_keep_open.)
 */
static int writer_only(void)
{
	if (!w.thread_started || !w.own_table ||
	    pthread_equal(pthread_self(), w.thread))
		return 0;
	pthread_mutex_lock(&w.cycle_lock);
	int only = 0;
	if (w.fd >= 0 && !w.broken && !w.final_done && !is_trace(w.fd)) {
		long fd = reopen_trace();
		if (fd >= 0)
			syscall(SYS_close, fd);
		only = fd < 0;
	}
	pthread_mutex_unlock(&w.cycle_lock);
	return only;
}

struct sync_req {
	int final, reason;
	int64_t status;
	const char *exec_path;
	int done;
};

/* The cycles of a flush that must take everything now (exit, exec, a
 * parked process's tick), on the calling thread. */
static void sync_cycles(void *arg)
{
	struct sync_req *r = arg;
	pthread_mutex_lock(&w.cycle_lock);
	if (!w.final_done) {
		while (cycle(r->final, r->reason, r->status, r->exec_path))
			;
		if (r->final)
			w.final_done = 1;
	}
	w.parked_flush = kp_mono_ns(); /* (kp_writer_parked_tick) */
	pthread_mutex_unlock(&w.cycle_lock);
	r->done = 1;
}

/* sync_cycles on the writer thread when only it can write the trace,
 * else here. */
static void sync_now(struct sync_req *r)
{
	if (writer_only())
		kp_writer_call(sync_cycles, r);
	if (!r->done) /* (a writer that stopped meanwhile) */
		sync_cycles(r);
}

void kp_writer_sync(int final, int reason, int64_t status)
{
	struct sync_req r = { final, reason, status, NULL, 0 };
	sync_now(&r);
	if (final && w.thread_started &&
	    !pthread_equal(pthread_self(), w.thread)) {
		atomic_store(&w.stop, 1);
		kp_writer_wake();
		join_writer();
		w.thread_started = 0;
		atomic_store(&kp.writer_up, 0);
	}
	if (final)
		kp_warn_flush();
}

/* ---- the leak scan's (leakscan.c) -------------------------------------- */

int kp_writer_read_back(void)
{
	kp_writer_sync(0, 0, 0); /* every event so far into the file */
	pthread_mutex_lock(&w.cycle_lock);
	long fd = -1;
	if (w.kw && !w.broken) {
		fd = sys_open(w.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
		if (fd >= 0 && !is_trace(fd)) {
			syscall(SYS_close, fd);
			fd = -1;
		}
	}
	pthread_mutex_unlock(&w.cycle_lock);
	return fd >= 0 ? kp_high_fd((int)fd) : -1;
}

int kp_writer_forked(void)
{
	return w.forked;
}

uintptr_t kp_writer_pthread(void)
{
	return w.thread_started ? (uintptr_t)w.thread : 0;
}

void kp_writer_add_now(struct kp_rec *rec)
{
	pthread_mutex_lock(&w.cycle_lock);
	if (w.kw && !w.broken && !w.final_done) {
		rec->ts = to_ns(kp_ticks());
		rec->tid = kp_tls.tid;
		kp_writer_add(w.kw, rec);
	}
	pthread_mutex_unlock(&w.cycle_lock);
}

/*
 * The app's last thread is exiting (lifecycle.c, app_thread_gone):
 * stop the writer thread, leaving the trace open, so that glibc, whose
 * count of threads includes the writer, sees that thread as its last and
 * calls exit(0) there, whose on_exit handler finishes the trace on that
 * thread (kp_writer_sync runs the cycles itself when there is no writer
 * thread). A thread created after that starts the writer again
 * (kp_writer_unpark).
 */
void kp_writer_park(void)
{
	if (!w.thread_started || pthread_equal(pthread_self(), w.thread))
		return;
	atomic_store(&w.stop, 1);
	kp_writer_wake();
	join_writer();
	w.thread_started = 0;
	atomic_store(&kp.writer_up, 0);
	w.parked_flush = kp_mono_ns();
	atomic_store(&w.parked, 1);
	kp_ring_parked(); /* this thread's ring, the app's only one */
}

int kp_writer_parked(void)
{
	return atomic_load(&w.parked) && syscall(SYS_getpid) == kp.pid;
}

int kp_writer_parked_tick(void)
{
	if (!kp_writer_parked())
		return 0;
	if (kp_mono_ns() - w.parked_flush >= flush_wait_ns())
		kp_writer_sync(0, 0, 0);
	return 1;
}

void kp_writer_unpark(void)
{
	if (!atomic_exchange(&w.parked, 0))
		return;
	atomic_store(&w.stop, 0);
	/* busy: kprof's own pthread_create passes the writer through, not
	 * counted as an app thread (nor sampled) */
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	if (spawn_thread() != 0)
		atomic_store(&kp.run, KP_ST_OFF);
	kp_busy_restore(busy);
}

/*
 * The trace's path is about to become unreachable: the app calls chroot
 * (hook_creds.c). A sandbox closes the fds it does not know first, ours
 * among them, and then chroots: Firefox's chroot helper, a process that
 * sweeps its fds, chroots to an empty directory and exits. Its last
 * write then found the fd closed and the path gone ("trace is gone"),
 * and the trace had no end. So if the app has closed the trace's fd, the
 * file is opened again now, by path, at the same number (free in the
 * app's table, and still the trace in the writer thread's private one).
 * Keeps errno.
 */
void kp_writer_keep_open(void)
{
	if (!w.header_done)
		return; /* no trace (yet) */
	int saved = errno;
	pthread_mutex_lock(&w.cycle_lock);
	if (w.fd >= 0 && !w.broken && !w.final_done && !is_trace(w.fd) &&
	    syscall(SYS_fcntl, w.fd, F_GETFD) < 0 && errno == EBADF) {
		long fd = reopen_trace();
		if (fd >= 0) {
			syscall(SYS_dup3, fd, w.fd, O_CLOEXEC);
			syscall(SYS_close, fd);
		}
	}
	pthread_mutex_unlock(&w.cycle_lock);
	errno = saved;
}

/* Flush before exec: if the exec succeeds this trace ends here. */
void kp_writer_exec(const char *path)
{
	struct sync_req r = { 0, KP_END_EXEC, 0, path, 0 };
	sync_now(&r);
	kp_warn_flush();
}

void kp_writer_fork_prepare(void)
{
	pthread_mutex_lock(&w.cycle_lock);
}

void kp_writer_fork_parent(void)
{
	pthread_mutex_unlock(&w.cycle_lock);
}

/*
 * The child: the writer thread is gone and the parent's trace fd is the
 * parent's. Start a trace of our own, re-emitting every module and stack
 * (the child's trace must stand alone). The old encoder is abandoned, not
 * freed: the parent's writer may have been inside it when fork happened.
 */
void kp_writer_after_fork_child(void)
{
	/* the leak scan reads the parent's trace up to the fork */
	kp_leak_fork_child(w.path, w.thread_started ? (uintptr_t)w.thread : 0);
	kp_warn_after_fork_child();
	w.forked = 1; /* and its exec'd image, a fresh heap, is not */
	pthread_mutex_init(&w.cycle_lock, NULL);
	pthread_mutex_init(&w.call_lock, NULL);
	atomic_store(&w.call_done, atomic_load(&w.call_seq));
	/* w.fd may be the number of the writer's table, not this one's:
	 * close it only if here too it is the parent's trace */
	if (is_trace(w.fd))
		syscall(SYS_close, w.fd);
	w.fd = -1;
	w.kw = NULL;
	w.broken = 0;
	w.header_done = 0;
	w.final_done = 0;
	kp_snapshot_after_fork_child();
	w.thread_started = 0;
	w.own_table = 0;
	atomic_store(&w.stop, 0);
	w.stacks_out = 0;
	w.qtexts_out = 0;
	w.pynames_out = 0;
	w.modules_since = 0;
	w.stack_drops_out = 0;
	memset(w.lost_out, 0, sizeof(w.lost_out));
	atomic_store(&kp.writer_up, 0);
	if (prepare_output() != 0) {
		atomic_store(&kp.run, KP_ST_OFF);
		return;
	}
	/* The header now, while fork returns, as at start: a child killed at
	 * once (gdb's probes of ptrace, forked and SIGKILLed) leaves a trace
	 * that reads as truncated, not an empty file that is "not a trace"
	 * and stops kprof-analyze on the whole set. The child keeps its
	 * parent's clock factor, or, forked in the parent's first
	 * millisecond, calibrates its own. */
	if (header_once() != 0)
		return;
	/* A parent whose writer stepped out for it (hook_stat.c) wants its
	 * children one-threaded too (Chromium's zygote forks the processes
	 * that sandbox themselves): parked, as it was. */
	if (atomic_load(&w.parked)) {
		w.parked_flush = kp_mono_ns();
		return;
	}
	if (spawn_thread() != 0)
		atomic_store(&kp.run, KP_ST_OFF);
}
