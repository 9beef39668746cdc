/*
 * Children made by clone instead of fork (tests/integ/test_rawclone.py):
 *
 *   rawclone MODE N
 *
 * makes one child, which allocates and frees N blocks of 32 bytes, leaks
 * one of 100 bytes in child_work, prints "child PID done" and _exits 0;
 * the parent waits for it and prints its status. MODE is how the child
 * is made:
 *   syscall  syscall(SYS_clone, SIGCHLD, 0, ...) (bubblewrap's way)
 *   clone3   syscall(SYS_clone3, {exit_signal SIGCHLD}, 88)
 *   clone    glibc's clone() on a stack of PTHREAD_STACK_MIN bytes whose
 *            function longjmps back, as Chromium's base::ForkWithFlags
 *            does; the child also prints how many bytes of that stack
 *            had been written when its function ran ("stack_used N")
 *   asm      the clone system call by the instruction itself, which
 *            no interposer sees (Go's runtime, hand-written sandboxes)
 *   fork     fork(), for comparison
 *   atfork   (rawclone_atfork, built with -DOWN_ATFORK -rdynamic) the
 *            program keeps the pthread_atfork handlers itself, kprof's
 *            among them (its __register_atfork), and runs them around
 *            its clone() as Firefox's mozglue does
 */
#include <limits.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define FILL 0xa5

static jmp_buf env;
static unsigned char *stack_lo; /* the clone() stack, filled with FILL */

static int clone_fn(void *arg)
{
	(void)arg;
	size_t untouched = 0;
	while (stack_lo[untouched] == FILL)
		untouched++;
	printf("stack_used %zu\n", (size_t)PTHREAD_STACK_MIN - untouched);
	longjmp(env, 1);
}

static __attribute__((noinline)) pid_t clone_longjmp(void)
{
	_Alignas(16) unsigned char stack[PTHREAD_STACK_MIN];
	memset(stack, FILL, sizeof(stack));
	stack_lo = stack;
	return clone(clone_fn, stack + sizeof(stack), SIGCHLD, NULL);
}

static pid_t clone_asm(void)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"((long)SYS_clone), "D"((long)SIGCHLD), "S"(0L),
			   "d"(0L)
			 : "rcx", "r11", "memory");
	return (pid_t)ret;
}

#ifdef OWN_ATFORK
/* The program's own __register_atfork, which every library's
 * pthread_atfork calls (glibc's libc_nonshared.a), kprof's too: this
 * executable exports it, as Firefox's does. Handlers kept, run by
 * atfork_clone. */
static void (*pre[16])(void), (*par[16])(void), (*chi[16])(void);
static int nhandlers;

int __register_atfork(void (*p)(void), void (*pa)(void), void (*c)(void),
		      void *dso);
int __register_atfork(void (*p)(void), void (*pa)(void), void (*c)(void),
		      void *dso)
{
	(void)dso;
	if (nhandlers == 16)
		return 12; /* ENOMEM */
	pre[nhandlers] = p;
	par[nhandlers] = pa;
	chi[nhandlers++] = c;
	return 0;
}

static pid_t atfork_clone(void)
{
	for (int i = nhandlers; i-- > 0;)
		if (pre[i])
			pre[i]();
	pid_t pid = setjmp(env) ? 0 : clone_longjmp();
	for (int i = 0; i < nhandlers; i++)
		if (pid == 0 ? chi[i] != NULL : par[i] != NULL)
			(pid == 0 ? chi[i] : par[i])();
	return pid;
}
#endif

static __attribute__((noinline)) void child_work(long n)
{
	for (long i = 0; i < n; i++) {
		void *volatile p = malloc(32);
		free(p);
	}
	char *leak = malloc(100);
	printf("child %d done %p\n", (int)getpid(), (void *)leak);
	fflush(stdout);
	_exit(0);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "syscall";
	long n = argc > 2 ? atol(argv[2]) : 1000000;
	pid_t pid;

	fflush(stdout);
	if (!strcmp(mode, "syscall")) {
		pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	} else if (!strcmp(mode, "clone3")) {
		struct clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.exit_signal = SIGCHLD;
		pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	} else if (!strcmp(mode, "asm")) {
		pid = clone_asm();
	} else if (!strcmp(mode, "clone")) {
		pid = setjmp(env) ? 0 : clone_longjmp();
#ifdef OWN_ATFORK
	} else if (!strcmp(mode, "atfork")) {
		pid = atfork_clone();
#endif
	} else {
		pid = fork();
	}
	if (pid < 0) {
		perror("clone");
		return 1;
	}
	if (pid == 0)
		child_work(n);
	int st;
	if (waitpid(pid, &st, 0) != pid) {
		perror("waitpid");
		return 1;
	}
	printf("parent: child status %d\n", st);
	return 0;
}
