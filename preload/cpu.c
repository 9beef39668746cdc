/* SPDX-License-Identifier: MIT */
/*
 * CPU sampling (KOTOBA_PROFILE_CPU=1): every thread gets a POSIX timer on
 * its own CPU-time clock (timer_create(CLOCK_THREAD_CPUTIME_ID) with
 * SIGEV_THREAD_ID), firing KOTOBA_PROFILE_CPU_HZ times per CPU-second of
 * that thread, so a thread is sampled in proportion to the CPU it uses (no
 * setitimer skew towards whichever thread happens to run).
 *
 * The signal handler takes no lock and allocates nothing: it unwinds from
 * the interrupted context with kprof's DWARF unwinder (unwind.c: a lock-free
 * rule cache, _dl_find_object on a miss), or, when that one meets a frame it
 * does not cover (or KOTOBA_PROFILE_UNWIND=libunwind), walks the frame
 * pointers; either way bounds-checked against the thread's stack, recorded
 * when the timer was armed. It reads the thread's CPU clock
 * (the sample's weight: the CPU ns since the previous sample) and appends
 * the raw pcs to a sample ring of its own. That ring has one producer, the
 * handler, so a sample never lands in the middle of an event the thread was
 * pushing to its event ring. The writer drains the sample rings, interns the
 * pcs into stack ids (kp_stack_intern_pcs) and emits CPU_SAMPLE records.
 * (libunwind is not used here: its first use per thread takes locks and
 * dl_iterate_phdr's loader lock, neither safe in a signal handler.)
 *
 * Threads created later are armed by the pthread_create wrapper, in the new
 * thread before its start routine runs; a thread-exit destructor deletes the
 * timer. The signal is a real-time signal nobody has a handler for, chosen
 * at start from SIGRTMAX down, installed with SA_RESTART so interrupted
 * system calls restart. If the app later installs its own handler for that
 * signal (sigaction/signal), kprof steps aside: every timer is deleted,
 * a warning is printed, and the app's handler is installed as asked.
 */
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define SRING_WORDS (1u << 15) /* 256 KiB of pcs per thread */
#define SAMPLE_HDR 3           /* tsc, tid | depth << 32 | python << 48,
				* weight; then depth pcs, python words
				* (Python's frames: pystack.c) */
#define MAX_PY 24              /* Python frames a sample keeps */
#define MAX_DEPTH 128

enum { SR_ACTIVE = 0, SR_CLOSED = 1, SR_FREE = 2 };

struct sring {
	_Atomic uint64_t head;  /* producer (handler): next word (release) */
	char pad0[56];
	_Atomic uint64_t tail;  /* consumer (writer) */
	char pad1[56];
	_Atomic int state;
	_Atomic int armed;      /* timer exists */
	timer_t timer;
	uint32_t tid;
	uintptr_t pthread;      /* the thread's pthread_self() */
	_Atomic uint64_t lost;  /* samples dropped (ring full) */
	struct sring *next;     /* registry, push-only */
	uint64_t words[SRING_WORDS];
};

/* The handler's view of its thread (initial-exec TLS: signal-safe). */
struct cpu_tls {
	struct sring *r;
	uintptr_t stack_lo, stack_hi;
	uint64_t last_cpu; /* thread CPU ns at the previous sample */
};
static __thread struct cpu_tls ct __attribute__((tls_model("initial-exec")));

static struct {
	int on;                 /* sampling started */
	_Atomic int stepped_aside;
	uint64_t reset_ns;      /* the app reset sig then (ns after start) */
	int sig;
	long period_ns;
	pthread_key_t key;
	_Atomic(struct sring *) rings;
	int (*real_pthread_create)(pthread_t *, const pthread_attr_t *,
				   void *(*)(void *), void *);
	int (*real_sigaction)(int, const struct sigaction *,
			      struct sigaction *);
	/* writer side: samples collected, not yet emitted */
	struct kp_cpu_sample *buf;
	unsigned nbuf, ibuf;
	uint64_t lost_seen;
} cpu;

#define BUF_CAP 65536u

/* ---- the signal handler --------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Frame-pointer walk from the interrupted context into pcs (innermost
 * first). Every frame pointer must lie inside the thread's stack, above
 * the previous one, and 8-byte aligned, so a function without frame
 * pointers ends the walk instead of faulting. */
static unsigned walk(const ucontext_t *uc, uint64_t *pcs, unsigned max)
{
	unsigned n = 0;
#if defined(__x86_64__)
	uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	uintptr_t fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
	uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	uintptr_t pc = (uintptr_t)uc->uc_mcontext.pc;
	uintptr_t fp = (uintptr_t)uc->uc_mcontext.regs[29];
	uintptr_t sp = (uintptr_t)uc->uc_mcontext.sp;
#else
	(void)uc;
	return 0;
#endif
#if defined(__x86_64__)
	/* kprof's DWARF unwinder (unwind.c) when it covers every frame:
	 * it also follows code built without frame pointers. */
	if (kp.cfg.unwind != KP_UNWIND_LIBUNWIND && sp >= ct.stack_lo &&
	    sp < ct.stack_hi) {
		int k = kp_unwind_regs(pc, sp, fp, ct.stack_hi, pcs, (int)max);
		if (k > 0)
			return (unsigned)k;
	}
#endif
	/* The interrupted pc is not a return address: store pc + 1 so that a
	 * reader's "return address - 1" lookup lands on it, like the rest. */
	pcs[n++] = pc + 1;
	uintptr_t lo = sp > ct.stack_lo ? sp : ct.stack_lo;
	while (n < max) {
		if (fp < lo || fp + 16 > ct.stack_hi || (fp & 7))
			break;
		uintptr_t next = ((const uintptr_t *)fp)[0];
		uintptr_t ret = ((const uintptr_t *)fp)[1];
		if (ret < 4096)
			break;
		pcs[n++] = ret;
		if (next <= fp)
			break;
		lo = fp + 16;
		fp = next;
	}
	return n;
}

void kp_cpu_on_sample(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	int saved = errno;
	/* come with the app's signal: where the program was, not the
	 * entry of the app's handler */
	ucv = kp_sig_outer_context(ucv, kp_sig_dispatch);
	struct sring *r = ct.r;
	if (!r || !kp_recording() || kp_tls.writer)
		goto out;
	uint64_t now = thread_cpu_ns();
	uint64_t weight = now - ct.last_cpu;
	ct.last_cpu = now;
	uint64_t pcs[MAX_DEPTH];
	unsigned max = (unsigned)kp.cfg.stack_depth;
	if (max == 0 || max > MAX_DEPTH)
		max = MAX_DEPTH;
	unsigned n = walk(ucv, pcs, max);
	uint64_t py[MAX_PY];
	unsigned np = kp_pystack_enabled ? kp_pystack_sample(py, MAX_PY) : 0;
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (h + SAMPLE_HDR + n + np - t > SRING_WORDS) {
		atomic_fetch_add_explicit(&r->lost, 1, memory_order_relaxed);
		goto out;
	}
	r->words[h++ % SRING_WORDS] = kp_ticks();
	r->words[h++ % SRING_WORDS] = (uint64_t)r->tid | (uint64_t)n << 32 |
				      (uint64_t)np << 48;
	r->words[h++ % SRING_WORDS] = weight;
	for (unsigned i = 0; i < n; i++)
		r->words[h++ % SRING_WORDS] = pcs[i];
	for (unsigned i = 0; i < np; i++)
		r->words[h++ % SRING_WORDS] = py[i];
	atomic_store_explicit(&r->head, h, memory_order_release);
out:
	errno = saved;
}

/* ---- per-thread timers ---------------------------------------------------- */

static struct sring *sring_get(void)
{
	struct sring *r;
	for (r = atomic_load(&cpu.rings); r; r = r->next) {
		int st = SR_FREE;
		if (atomic_compare_exchange_strong(&r->state, &st, SR_ACTIVE))
			return r;
	}
	r = kp_own_map(sizeof(*r), 0);
	if (!r)
		return NULL;
	struct sring *old = atomic_load(&cpu.rings);
	do
		r->next = old;
	while (!atomic_compare_exchange_weak(&cpu.rings, &old, r));
	return r;
}

static void disarm(struct sring *r)
{
	if (atomic_exchange(&r->armed, 0))
		timer_delete(r->timer);
}

/* A thread's timer could not be made or set (a sandbox's seccomp filter
 * refuses the call, say): said once a process, with errno. */
static void timer_failed(const char *call)
{
	static _Atomic int said;
	if (!atomic_exchange(&said, 1))
		kp_warn("CPU sampling: %s failed (%s); threads without a timer "
			"are not sampled", call, strerror(errno));
}

/* Start sampling the calling thread. */
static void arm_self(void)
{
	if (!cpu.on || atomic_load(&cpu.stepped_aside) || ct.r)
		return;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	int saved = errno;
	pthread_attr_t a;
	void *addr;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &a) == 0) {
		if (pthread_attr_getstack(&a, &addr, &size) == 0) {
			ct.stack_lo = (uintptr_t)addr;
			ct.stack_hi = (uintptr_t)addr + size;
		}
		pthread_attr_destroy(&a);
	}
	struct sring *r = sring_get();
	if (!r)
		goto out;
	r->tid = (uint32_t)kp_gettid();
	r->pthread = (uintptr_t)pthread_self();
	ct.last_cpu = thread_cpu_ns();
	ct.r = r;
	pthread_setspecific(cpu.key, r);

	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = cpu.sig;
	sev._sigev_un._tid = (pid_t)r->tid;
	if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &r->timer) != 0) {
		timer_failed("timer_create");
		goto out;
	}
	atomic_store(&r->armed, 1);
	struct itimerspec its = {
		{ cpu.period_ns / 1000000000, cpu.period_ns % 1000000000 },
		{ cpu.period_ns / 1000000000, cpu.period_ns % 1000000000 } };
	if (timer_settime(r->timer, 0, &its, NULL) != 0)
		timer_failed("timer_settime");
out:
	errno = saved;
	kp_busy_restore(busy);
}

static void thread_gone(void *arg)
{
	struct sring *r = arg;
	disarm(r);
	ct.r = NULL;
	atomic_store_explicit(&r->state, SR_CLOSED, memory_order_release);
}

/* In a forked child (lifecycle.c's child handler): timers are not
 * inherited, the rings hold the parent's samples (which the parent
 * writes). Start afresh on this thread. */
void kp_cpu_after_fork_child(void)
{
	if (!cpu.on)
		return;
	for (struct sring *r = atomic_load(&cpu.rings); r; r = r->next) {
		atomic_store(&r->armed, 0);
		atomic_store(&r->head, 0);
		atomic_store(&r->tail, 0);
		atomic_store(&r->lost, 0);
		atomic_store(&r->state, SR_FREE);
	}
	cpu.nbuf = cpu.ibuf = 0;
	cpu.lost_seen = 0;
	ct.r = NULL;
	arm_self();
}

/* The real functions, resolved with the others (real.c: dlsym's own
 * allocations go to the boot pool there). */
static void resolve(void)
{
	if (cpu.real_sigaction)
		return;
	kp_real_resolve();
	cpu.real_pthread_create = (int (*)(pthread_t *,
		const pthread_attr_t *, void *(*)(void *), void *))
		kp_real.pthread_create;
	atomic_thread_fence(memory_order_release);
	cpu.real_sigaction = (int (*)(int, const struct sigaction *,
		struct sigaction *))kp_real.sigaction;
}

void kp_cpu_start(void)
{
	if (!kp.cfg.cpu || cpu.on)
		return;
	resolve();
	cpu.buf = kp_arena_alloc(BUF_CAP * sizeof(*cpu.buf));
	if (!cpu.buf || !cpu.real_sigaction ||
	    pthread_key_create(&cpu.key, thread_gone) != 0) {
		kp_warn("cannot set up CPU sampling; not sampling");
		return;
	}
	/* A real-time signal with no handler, from the top down (apps that
	 * use one usually count up from SIGRTMIN). */
	for (int s = SIGRTMAX; s >= SIGRTMIN; s--) {
		struct sigaction old;
		if (cpu.real_sigaction(s, NULL, &old) == 0 &&
		    !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
			cpu.sig = s;
			break;
		}
	}
	if (!cpu.sig) {
		kp_warn("no free real-time signal for CPU sampling; "
			"not sampling");
		return;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = kp_cpu_on_sample;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (cpu.real_sigaction(cpu.sig, &sa, NULL) != 0) {
		kp_warn("cannot install the CPU sampling handler; not sampling");
		return;
	}
	cpu.period_ns = 1000000000L / kp.cfg.cpu_hz;
	cpu.on = 1;
	arm_self();
}

int kp_cpu_signal(void)
{
	return cpu.on ? cpu.sig : 0;
}

/* ---- writer side ---------------------------------------------------------- */

int kp_cpu_collect(uint64_t wm)
{
	if (!cpu.on || cpu.ibuf < cpu.nbuf)
		return 0;
	cpu.nbuf = cpu.ibuf = 0;
	int more = 0;
	for (struct sring *r = atomic_load(&cpu.rings); r; r = r->next) {
		int st = atomic_load_explicit(&r->state, memory_order_acquire);
		if (st == SR_FREE)
			continue;
		uint64_t h = atomic_load_explicit(&r->head,
						  memory_order_acquire);
		uint64_t t = atomic_load_explicit(&r->tail,
						  memory_order_relaxed);
		while (t < h) {
			uint64_t tsc = r->words[t % SRING_WORDS];
			uint64_t td = r->words[(t + 1) % SRING_WORDS];
			if (tsc >= wm)
				break;
			if (cpu.nbuf == BUF_CAP) {
				more = 1;
				break;
			}
			uint64_t pcs[MAX_DEPTH], py[MAX_PY];
			uint32_t depth = (uint32_t)(td >> 32) & 0xffff;
			uint32_t pyw = (uint32_t)(td >> 48) & 0xff;
			uint32_t n = depth > MAX_DEPTH ? MAX_DEPTH : depth;
			/* never more than MAX_PY: the handler wrote it */
			uint32_t np = pyw > MAX_PY ? 0 : pyw;
			for (uint32_t i = 0; i < n; i++)
				pcs[i] = r->words[(t + SAMPLE_HDR + i) %
						  SRING_WORDS];
			for (uint32_t i = 0; i < np; i++)
				py[i] = r->words[(t + SAMPLE_HDR + depth + i) %
						 SRING_WORDS];
			struct kp_cpu_sample *s = &cpu.buf[cpu.nbuf++];
			s->tsc = tsc;
			s->tid = (uint32_t)td;
			s->weight = r->words[(t + 2) % SRING_WORDS];
			s->stack = n ? kp_stack_intern_pcs(pcs,
				kp_modules_known_prefix(pcs, n)) : 0;
			if (np && s->stack)
				s->stack = kp_pystack_sample_stack(s->stack, py,
								   np);
			t += SAMPLE_HDR + depth + pyw;
		}
		atomic_store_explicit(&r->tail, t, memory_order_release);
		if (st == SR_CLOSED && t == h)
			atomic_store_explicit(&r->state, SR_FREE,
					      memory_order_release);
	}
	return more;
}

const struct kp_cpu_sample *kp_cpu_next(void)
{
	return cpu.ibuf < cpu.nbuf ? &cpu.buf[cpu.ibuf++] : NULL;
}

uint64_t kp_cpu_lost(void)
{
	uint64_t n = 0;
	for (struct sring *r = atomic_load(&cpu.rings); r; r = r->next)
		n += atomic_load_explicit(&r->lost, memory_order_relaxed);
	return n;
}

/* ---- interposers ---------------------------------------------------------- */

struct tramp {
	void *(*fn)(void *);
	void *arg;
	int sampled;
	int named;          /* name holds the creator's (hook_thread.c) */
	uint32_t name_gen;
	char name[16];
};

/* An app thread's start: counted (lifecycle.c), its name known, and
 * sampled when on. */
static void *start_app(void *p)
{
	struct tramp t = *(struct tramp *)p;
	kp_arena_free(p);
	if (t.named)
		kp_thread_name_take(t.name, t.name_gen);
	kp_app_thread_start();
	if (t.sampled)
		arm_self();
	return t.fn(t.arg);
}

KP_EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr,
			     void *(*fn)(void *), void *arg)
{
	resolve();
	if (kp_tls.busy) /* kprof's writer */
		return cpu.real_pthread_create(th, attr, fn, arg);
	kp_io_direct_off();
	if (!kp_ready())
		return cpu.real_pthread_create(th, attr, fn, arg);
	kp_tls.busy = 1;
	struct tramp *t = kp_arena_alloc(sizeof(*t));
	kp_busy_leave();
	if (!t)
		return cpu.real_pthread_create(th, attr, fn, arg);
	t->fn = fn;
	t->arg = arg;
	t->sampled = cpu.on && !atomic_load(&cpu.stepped_aside);
	t->named = kp_thread_name_inherit(t->name, &t->name_gen);
	kp_app_threads_add(1);
	int rc = cpu.real_pthread_create(th, attr, start_app, t);
	if (rc != 0) {
		kp_app_threads_add(-1);
		kp_arena_free(t);
	}
	return rc;
}

/* The app sets sig's action (signals.c): if kprof samples with it, stop
 * sampling everywhere, then let the app have it. A vfork child, which
 * shares this memory but none of its timers, changes nothing here. */
void kp_cpu_step_aside(int sig, int reset)
{
	if (!cpu.on || sig != cpu.sig || syscall(SYS_getpid) != kp.pid ||
	    atomic_exchange(&cpu.stepped_aside, 1))
		return;
	for (struct sring *r = atomic_load(&cpu.rings); r; r = r->next)
		disarm(r);
	if (reset) {
		/* Programs reset every signal to its default in a child
		 * about to exec (git's run-command, python's subprocess):
		 * there the new image samples afresh, and a warning would
		 * only be noise on the program's stderr. Said at exit, if
		 * the process gets there (kp_cpu_at_exit). */
		cpu.reset_ns = kp_mono_ns() - kp.mono0;
		return;
	}
	kp_warn("the program installs a handler for signal %d, which kprof "
		"uses for CPU sampling; CPU sampling stops", sig);
}

uint32_t kp_cpu_tid_of(pthread_t th)
{
	for (struct sring *r = atomic_load(&cpu.rings); r; r = r->next)
		if (atomic_load(&r->state) == SR_ACTIVE &&
		    r->pthread == (uintptr_t)th)
			return r->tid;
	return 0;
}

/* Called by finish() (lifecycle.c), in the traced process only. */
void kp_cpu_at_exit(void)
{
	if (cpu.reset_ns)
		kp_warn("the program set signal %d, which kprof uses for CPU "
			"sampling, to its default action %.1f ms after it "
			"started; no CPU samples after that", cpu.sig,
			(double)cpu.reset_ns / 1e6);
	cpu.reset_ns = 0;
}
