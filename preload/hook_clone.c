/* SPDX-License-Identifier: MIT */
/*
 * Processes made by clone rather than fork.
 *
 * glibc's fork() runs the pthread_atfork handlers that give the child a
 * trace of its own (lifecycle.c, cpu.c). A program that makes its
 * children with clone() or a raw syscall(SYS_clone) or
 * syscall(SYS_clone3) skips them: Chromium's zygote (base::ForkWithFlags
 * calls clone() with a small stack and longjmps back), bubblewrap,
 * container runtimes. Such a child kept the parent's kprof state without
 * the parent's writer thread: once its ring filled it waited for a writer
 * that was not there, for ever (headless Chromium under kprof: "Did not
 * receive ping from zygote child", then "GPU process isn't usable.
 * Goodbye.").
 *
 * A clone without CLONE_VM is a fork, and these interposers run the fork
 * handlers around it: prepare before, parent's after in the parent, and
 * the child's in the child, for clone() on its entry before fn (on a
 * stack of their own), for syscall() where the system call returns 0.
 * A program that runs the pthread_atfork handlers itself around its clone
 * (Firefox's mozglue) runs the child's after it has released its own
 * allocator's locks; the child's handler, which starts the writer thread
 * through the program's pthread_create and malloc, waits for it then
 * (lifecycle.c counts the handlers' runs).
 * Clones that share memory (threads, vfork's kind) pass as they are.
 * syscall() is served by the system call instruction, as glibc's is (a
 * result in -4095..-1 is -errno). A child made by a system call no
 * interposer sees (inline assembly) stops recording, instead of waiting,
 * when its ring fills (ring.c).
 */
#include "state.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "hook_clone.c: syscall() is implemented for x86-64 only"
#endif

static long raw_syscall(long n, const long a[6])
{
	register long r10 __asm__("r10") = a[3];
	register long r8 __asm__("r8") = a[4];
	register long r9 __asm__("r9") = a[5];
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10),
			   "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* A clone whose child gets a copy of the memory (no CLONE_VM) and runs on
 * the stack it was cloned on (no new stack): a fork. */
static int fork_like_clone(unsigned long flags, unsigned long stack)
{
	return !(flags & CLONE_VM) && !stack;
}

/* clone3's struct clone_args (flags at 0, stack at 40), read through the
 * kernel: a bad pointer is the system call's EFAULT, not kprof's fault. */
static int fork_like_clone3(long args, long size)
{
	uint64_t ca[6];
	if (!args || size < (long)sizeof(ca))
		return 0;
	struct iovec mine = { ca, sizeof(ca) }, theirs = { (void *)args,
							   sizeof(ca) };
	long none[6] = { 0 };
	long a[6] = { raw_syscall(SYS_getpid, none), (long)&mine, 1,
		      (long)&theirs, 1, 0 };
	if (raw_syscall(SYS_process_vm_readv, a) != (long)sizeof(ca))
		return 0;
	return !(ca[0] & CLONE_VM) && !ca[5];
}

KP_EXPORT long syscall(long n, ...)
{
	long a[6];
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);

	int forking = (n == SYS_clone && fork_like_clone((unsigned long)a[0],
						      (unsigned long)a[1])) ||
		      (n == SYS_clone3 && fork_like_clone3(a[0], a[1]));
	int nested = forking && kp_fork_nested();
	if (forking)
		kp_fork_prepare();
	long r = raw_syscall(n, a);
	if (forking) {
		if (r != 0)
			kp_fork_parent();
		else if (!nested)
			kp_fork_child();
	}
	if ((unsigned long)r > -4096UL) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

struct clone_call {
	int (*fn)(void *);
	void *arg;
	int nested; /* the program runs the handlers itself */
};

/* The child's first function: its copy of the caller's clone_call. The
 * handlers (a new trace file, the writer thread started: ~7.5 KB of
 * stack) run on a stack of their own, not on the caller's, which may be
 * small (Chromium's is PTHREAD_STACK_MIN, 16 KiB). */
#define HANDLER_STACK (256u << 10)
static int clone_child(void *p)
{
	const struct clone_call *c = p;
	if (c->nested)
		return c->fn(c->arg);
	void *st = mmap(NULL, HANDLER_STACK, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ucontext_t back, run;
	if (st != MAP_FAILED && getcontext(&run) == 0) {
		run.uc_stack.ss_sp = st;
		run.uc_stack.ss_size = HANDLER_STACK;
		run.uc_link = &back;
		makecontext(&run, kp_fork_child, 0);
		swapcontext(&back, &run);
		munmap(st, HANDLER_STACK);
	} else {
		kp_fork_child();
	}
	return c->fn(c->arg);
}

KP_EXPORT int clone(int (*fn)(void *), void *stack, int flags, void *arg,
		    ...)
{
	va_list ap;
	va_start(ap, arg);
	void *ptid = va_arg(ap, void *), *tls = va_arg(ap, void *),
	     *ctid = va_arg(ap, void *);
	va_end(ap);
	if (!kp_real.clone)
		kp_real_resolve();
	if (!kp_real.clone) {
		errno = ENOSYS;
		return -1;
	}
	if (flags & CLONE_VM)
		return kp_real.clone(fn, stack, flags, arg, ptid, tls, ctid);
	struct clone_call c = { fn, arg, kp_fork_nested() };
	kp_fork_prepare();
	int r = kp_real.clone(clone_child, stack, flags, &c, ptid, tls, ctid);
	int saved = errno;
	kp_fork_parent();
	errno = saved;
	return r;
}
