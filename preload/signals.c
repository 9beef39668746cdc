/* SPDX-License-Identifier: MIT */
/*
 * The app's signal handlers. A handler may run at any instruction of its
 * thread, kprof's own code included. Run there, the calls it makes would
 * pass through unrecorded (kp_tls.busy is set), and a handler that leaves
 * by siglongjmp would leave busy set: that thread recorded nothing more.
 * So kprof puts one dispatcher of its own in place of every handler the
 * app installs with sigaction or signal, keeps the app's handler in a
 * table, and when a signal comes:
 *   - outside kprof's code (busy 0), calls the app's handler at once, with
 *     the arguments the kernel gave;
 *   - inside it, defers the signal: blocks it in the interrupted context's
 *     mask (uc_sigmask, which sigreturn restores), queues it again to this
 *     thread with its siginfo (rt_tgsigqueueinfo) and flags the thread.
 *     Where busy returns to 0 (kp_busy_leave) the flag unblocks it, and
 *     the kernel delivers it there: the app's handler runs outside
 *     kprof's code, later by the rest of one call's recording;
 *   - a synchronous one (a fault, an abort) cannot wait: its handler runs
 *     at once, as it would without the dispatcher.
 * A standard signal that is already pending when kprof queues it again
 * merges with it, as the kernel merges them anyway.
 *
 * Queries (sigaction's old, signal's return) answer with the app's handler
 * and flags, never the dispatcher. Not wrapped: SIG_DFL, SIG_IGN, and
 * handlers with SA_RESETHAND (the kernel resets those to SIG_DFL before
 * the dispatcher runs, so a deferred one would meet SIG_DFL), and nothing
 * in a process kprof does not trace. Handlers installed past these
 * functions (a raw rt_sigaction system call) are not wrapped either.
 *
 * A signal the app leaves to its default action, where that action kills
 * (Ctrl-C's SIGINT, kill's SIGTERM, a closed pipe's SIGPIPE, a crash's
 * SIGSEGV), would end the process with no END and without the events
 * since the last flush. With KOTOBA_PROFILE_SIGNALS (by default when CPU
 * sampling, which takes a handler anyway, is on: DESIGN's invariant 1),
 * kprof puts a handler of its own in place of SIG_DFL there
 * (fatal_sigs): it ends the trace (kp_finish_signal), then
 * the signal kills as it would have, SIG_DFL again: raised once more, or,
 * for a fault, the faulting instruction run again (the core dump shows
 * where it was). The app sees SIG_DFL in every answer, and a SIG_DFL it
 * sets keeps kprof's handler. Not taken: the real-time signals (kprof's
 * CPU sampler picks a free one by its SIG_DFL), SIGTRAP and SIGSYS
 * (debuggers, seccomp), SIGPROF (profilers), and the signals ignored or
 * handled when kprof starts (until the app sets SIG_DFL).
 */
#include "state.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef _NSIG
#define _NSIG 65
#endif
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel's; glibc sets it itself */
#endif

/* The app's handler of each signal while the kernel's is the dispatcher:
 * its function and sa_flags (SA_SIGINFO says how to call it). */
static struct {
	_Atomic uintptr_t fn;
	_Atomic int flags;
} app[_NSIG];

/* The signals this thread deferred, to unblock in kp_sig_release. */
static __thread sigset_t deferred;

typedef void (*handler1)(int);
typedef void (*handler3)(int, siginfo_t *, void *);

static int real_sigaction(int sig, const struct sigaction *act,
			  struct sigaction *old)
{
	if (KP_UNLIKELY(!kp_real.sigaction))
		kp_real_resolve();
	return ((int (*)(int, const struct sigaction *, struct sigaction *))
			kp_real.sigaction)(sig, act, old);
}

static int synchronous(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL ||
	       sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS ||
	       sig == SIGABRT;
}

static _Atomic int fatal_on; /* kp_sig_fatal_install ran */

static const int fatal_sigs[] = {
	SIGHUP,  SIGINT,  SIGQUIT, SIGILL,  SIGABRT, SIGBUS,  SIGFPE,  SIGUSR1,
	SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGXCPU, SIGXFSZ, SIGVTALRM,
};

static int fatal(int sig)
{
	for (size_t i = 0; i < KP_ARRAY_SIZE(fatal_sigs); i++)
		if (fatal_sigs[i] == sig)
			return 1;
	return 0;
}

/* Defer sig (see the top); 0 if it cannot be queued again. uc: the
 * context this handler returns to; outer: the program's, under kprof's
 * sampling handler when uc is that handler's entry, else uc. si: the
 * siginfo the app's handler will get; NULL for kprof's own handler
 * (on_fatal), which needs none: queued again with tgkill, which every
 * sandbox that lets a process kill itself allows (Firefox's content
 * sandbox refuses rt_tgsigqueueinfo and reports each call as a
 * violation). */
static int defer(int sig, siginfo_t *si, ucontext_t *uc, ucontext_t *outer)
{
	int saved = errno;
	/* all blocked till this returns (sigreturn puts uc's mask back):
	 * sig before it is queued (with SA_NODEFER it is not, and the copy
	 * would come back here at once), the others so that none defers
	 * itself in the middle of this one's update of `deferred` */
	sigset_t all, was;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &was);
	pid_t pid = (pid_t)syscall(SYS_getpid), tid = (pid_t)syscall(SYS_gettid);
	long rc = si ? syscall(SYS_rt_tgsigqueueinfo, pid, tid, sig, si) :
		       syscall(SYS_tgkill, pid, tid, sig);
	if (rc == 0) {
		/* blocked where this returns to, and where the sampling
		 * handler returns to, if it is under this one: else the copy
		 * came back at once, here again, for ever */
		sigaddset(&uc->uc_sigmask, sig);
		sigaddset(&outer->uc_sigmask, sig);
		sigaddset(&deferred, sig);
		atomic_signal_fence(memory_order_seq_cst);
		kp_tls.sig_deferred = 1;
	} else {
		/* not queued (the queue of signals is full): the handler
		 * runs now, with the mask the kernel gave it */
		pthread_sigmask(SIG_SETMASK, &was, NULL);
	}
	errno = saved;
	return rc == 0;
}

void *kp_sig_outer_context(void *uc, void (*other)(int, siginfo_t *, void *))
{
#if defined(__x86_64__)
	const ucontext_t *u = uc;
	/* At other's first instruction its frame is at rsp (x86-64's
	 * struct rt_sigframe: the restorer's address, then the ucontext):
	 * only a signal's delivery enters a handler there. */
	if ((uintptr_t)u->uc_mcontext.gregs[REG_RIP] == (uintptr_t)other)
		return (void *)((uintptr_t)u->uc_mcontext.gregs[REG_RSP] +
				sizeof(void *));
#else
	(void)other;
#endif
	return uc;
}

void kp_sig_dispatch(int sig, siginfo_t *si, void *uc)
{
	/* come with kprof's CPU sample: the app's handler gets the
	 * context the program was in, as without kprof */
	void *outer = kp_sig_outer_context(uc, kp_cpu_on_sample);
	if (kp_tls.busy && !synchronous(sig) && defer(sig, si, uc, outer))
		return;
	uc = outer;
	uintptr_t fn = atomic_load_explicit(&app[sig].fn, memory_order_acquire);
	if (fn == (uintptr_t)SIG_DFL || fn == (uintptr_t)SIG_IGN)
		return; /* changed as it came */
	if (atomic_load_explicit(&app[sig].flags, memory_order_relaxed) &
	    SA_SIGINFO)
		((handler3)fn)(sig, si, uc);
	else
		((handler1)fn)(sig);
}

/* ---- signals that kill by default ---------------------------------------- */

static void set_default(int sig)
{
	struct sigaction d;
	memset(&d, 0, sizeof(d));
	d.sa_handler = SIG_DFL;
	sigemptyset(&d.sa_mask);
	real_sigaction(sig, &d, NULL);
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	if (synchronous(sig)) {
		/* SIG_DFL first: a fault while the trace ends ends it; a
		 * fault in kprof's own code ends nothing */
		set_default(sig);
		if (!kp_tls.busy && !kp_tls.writer)
			kp_finish_signal(sig);
		errno = saved;
		if (si && si->si_code > 0 && sig != SIGABRT)
			return; /* the faulting instruction again: it kills */
	} else {
		void *outer = kp_sig_outer_context(uc, kp_cpu_on_sample);
		if (kp_tls.busy && defer(sig, NULL, uc, outer))
			return; /* back here when kprof's code is done */
		kp_finish_signal(sig);
		set_default(sig);
	}
	/* once more, now with SIG_DFL; blocked in here, it kills as it is
	 * unblocked */
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	syscall(SYS_tgkill, (pid_t)syscall(SYS_getpid),
		(pid_t)syscall(SYS_gettid), sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	errno = saved;
}

/* kprof's handler for sig in k. */
static void fatal_action(struct sigaction *k)
{
	memset(k, 0, sizeof(*k));
	k->sa_sigaction = on_fatal;
	k->sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&k->sa_mask);
}

void kp_sig_fatal_install(void)
{
	atomic_store(&fatal_on, 1);
	for (size_t i = 0; i < KP_ARRAY_SIZE(fatal_sigs); i++) {
		struct sigaction old, k;
		if (real_sigaction(fatal_sigs[i], NULL, &old) != 0 ||
		    (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
			continue;
		fatal_action(&k);
		real_sigaction(fatal_sigs[i], &k, NULL);
	}
}

/* Does setting handler h keep (or put) kprof's in place of SIG_DFL? */
static int keeps_fatal(int sig, sighandler_t h)
{
	return h == SIG_DFL && atomic_load(&fatal_on) && fatal(sig) &&
	       atomic_load_explicit(&kp.run, memory_order_acquire) !=
		       KP_ST_OFF;
}

/* An answer of the kernel's that is kprof's handler reads SIG_DFL. */
static void as_default(struct sigaction *k)
{
	if (k->sa_sigaction != on_fatal)
		return;
	memset(k, 0, sizeof(*k));
	k->sa_handler = SIG_DFL;
	sigemptyset(&k->sa_mask);
}

void kp_sig_release(void)
{
	int saved = errno;
	kp_tls.sig_deferred = 0;
	atomic_signal_fence(memory_order_seq_cst);
	sigset_t s = deferred;
	sigemptyset(&deferred);
	/* a pending one is delivered as this returns, busy being 0 */
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	errno = saved;
}

/* Would kprof wrap this handler? */
static int wraps(int sig, const struct sigaction *act)
{
	return sig > 0 && sig < _NSIG && act->sa_handler != SIG_DFL &&
	       act->sa_handler != SIG_IGN &&
	       act->sa_sigaction != kp_sig_dispatch && /* handed back raw */
	       !(act->sa_flags & SA_RESETHAND) &&
	       atomic_load_explicit(&kp.run, memory_order_acquire) !=
		       KP_ST_OFF;
}

/* What the kernel answered (k), as the app installed it: the dispatcher
 * is the app's handler of the table as it was before this call (fn,
 * flags). */
static void as_app(struct sigaction *k, uintptr_t fn, int flags)
{
	if (k->sa_sigaction != kp_sig_dispatch)
		return;
	k->sa_flags = (k->sa_flags & ~SA_SIGINFO) | (flags & SA_SIGINFO);
	if (flags & SA_SIGINFO)
		k->sa_sigaction = (handler3)fn;
	else
		k->sa_handler = (handler1)fn;
}

KP_EXPORT int sigaction(int sig, const struct sigaction *act,
			struct sigaction *old)
{
	if (act)
		kp_cpu_step_aside(sig, act->sa_handler == SIG_DFL ||
					       act->sa_handler == SIG_IGN);
	if (sig <= 0 || sig >= _NSIG)
		return real_sigaction(sig, act, old);
	uintptr_t fn = atomic_load(&app[sig].fn);
	int flags = atomic_load(&app[sig].flags);
	struct sigaction k;
	const struct sigaction *use = act;
	if (act && wraps(sig, act)) {
		/* the table first: the dispatcher may run once it is in */
		atomic_store(&app[sig].flags, act->sa_flags);
		atomic_store(&app[sig].fn, (uintptr_t)act->sa_handler);
		k = *act;
		k.sa_sigaction = kp_sig_dispatch;
		k.sa_flags |= SA_SIGINFO;
		use = &k;
	} else if (act && keeps_fatal(sig, act->sa_handler)) {
		fatal_action(&k);
		use = &k;
	}
	int rc = real_sigaction(sig, use, old);
	if (rc != 0 && use == &k) {
		atomic_store(&app[sig].fn, fn);
		atomic_store(&app[sig].flags, flags);
	}
	if (rc == 0 && old) {
		as_app(old, fn, flags);
		as_default(old);
	}
	return rc;
}

/* glibc's signal (BSD semantics: SA_RESTART unless siginterrupt said
 * otherwise), then its handler moved behind the dispatcher. */
KP_EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	kp_cpu_step_aside(sig, h == SIG_DFL || h == SIG_IGN);
	if (KP_UNLIKELY(!kp_real.signal))
		kp_real_resolve();
	uintptr_t fn = sig > 0 && sig < _NSIG ? atomic_load(&app[sig].fn) : 0;
	sighandler_t r = ((sighandler_t (*)(int, sighandler_t))kp_real.signal)(
		sig, h);
	if (r == SIG_ERR)
		return r;
	struct sigaction cur;
	if (real_sigaction(sig, NULL, &cur) == 0 && cur.sa_handler == h &&
	    !(cur.sa_flags & SA_SIGINFO) && wraps(sig, &cur)) {
		cur.sa_flags &= ~SA_RESTORER; /* glibc adds its own */
		atomic_store(&app[sig].flags, cur.sa_flags);
		atomic_store(&app[sig].fn, (uintptr_t)h);
		cur.sa_sigaction = kp_sig_dispatch;
		cur.sa_flags |= SA_SIGINFO;
		real_sigaction(sig, &cur, NULL);
	} else if (keeps_fatal(sig, h)) {
		fatal_action(&cur);
		real_sigaction(sig, &cur, NULL);
	}
	if ((void *)r == (void *)on_fatal)
		return SIG_DFL;
	return (void *)r == (void *)kp_sig_dispatch ? (sighandler_t)fn : r;
}
