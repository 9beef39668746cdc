/*
 * Threads named after the program has sandboxed itself, for kprof's
 * thread names (tests/integ/test_sandboxes.py): once main has recorded
 * an event, a seccomp filter kills the process at any
 * prctl(PR_GET_NAME), as a strict sandbox's does with a call it does not
 * allow (Firefox's content processes report each as a violation), and
 * at any rt_sigpending (kprof asked for the pending signals around its
 * trace's writes on the program's threads, at exit). Then:
 *
 *   thread a   starts with main's name, renames itself "worker-a"
 *              (pthread_setname_np), and starts thread a1, which starts
 *              with "worker-a"
 *   thread b   renames itself "worker-b" (prctl) before its first event
 *
 * Each thread allocates, so each has a THREAD_START. Prints "ok".
 */
#include <pthread.h>

#include "jail.h"

static volatile void *sink;

static void touch(void)
{
	sink = malloc(64);
	free((void *)sink);
}

static void *a1(void *arg)
{
	(void)arg;
	touch();
	return NULL;
}

static void *a(void *arg)
{
	(void)arg;
	touch();
	pthread_setname_np(pthread_self(), "worker-a");
	touch();
	pthread_t t;
	pthread_create(&t, NULL, a1, NULL);
	pthread_join(t, NULL);
	return NULL;
}

static void *b(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "worker-b", 0, 0, 0);
	touch();
	return NULL;
}

static void jail_names(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigpending, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_GET_NAME, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	jail("namejail", f, sizeof(f) / sizeof(f[0]));
}

int main(void)
{
	touch();
	jail_names();
	pthread_t ta, tb;
	pthread_create(&ta, NULL, a, NULL);
	pthread_join(ta, NULL);
	pthread_create(&tb, NULL, b, NULL);
	pthread_join(tb, NULL);
	puts("ok");
	return 0;
}
