/*
 * A program that must be single-threaded when it says so
 * (tests/integ/test_solo.py), as sandboxes check it before they fork or
 * drop privileges, and as Python 3.12 checks after a fork:
 *
 *   solo N
 *
 * reads its thread count from /proc/self/stat (fopen, field 20) the way
 * Python's os.fork() does, and asserts it is 1; allocates and frees N
 * blocks; forks a child that asserts that /proc/self/task has a link
 * count of 3 (one thread) the way Chromium's zygote does (fstatat on a
 * /proc fd, "self/task/") and the way Firefox's sandbox does
 * (stat("/proc/self/task")), does the same work, leaks 64 bytes in
 * child_work and exits; then starts a thread that allocates N blocks and
 * leaks 32 bytes in thread_work, and once it has ended asserts one thread
 * again the sandboxes' way. Aborts when an assertion fails; prints "ok"
 * lines as it goes.
 *
 *   solo park
 *
 * asserts one thread the same way (so kprof's writer steps out and stays
 * out), allocates 2,000 blocks in park_work and frees 1,000 of them,
 * prints "allocs=2000 frees=1000 ready", then makes one allocation and
 * its free a millisecond, for ever (the test kills it).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void assert_one_thread(const char *who)
{
	struct stat a, b;
	int proc = open("/proc/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc < 0 || fstatat(proc, "self/task/", &a, 0) != 0 ||
	    stat("/proc/self/task", &b) != 0) {
		perror("stat");
		abort();
	}
	close(proc);
	if (a.st_nlink != 3 || b.st_nlink != 3) {
		fprintf(stderr, "%s: not single-threaded: %lu, %lu links\n",
			who, (unsigned long)a.st_nlink,
			(unsigned long)b.st_nlink);
		abort();
	}
	printf("ok %s single-threaded\n", who);
}

static void assert_one_thread_stat(const char *who)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	for (int field = 2; p && field < 20; field++)
		p = strchr(p + 1, ' ');
	long threads = p ? atol(p + 1) : -1;
	if (threads != 1) {
		fprintf(stderr, "%s: %ld threads in /proc/self/stat\n", who,
			threads);
		abort();
	}
	printf("ok %s single-threaded (stat)\n", who);
}

static void churn(long n)
{
	for (long i = 0; i < n; i++) {
		void *volatile p = malloc(48);
		free(p);
	}
}

static __attribute__((noinline)) void child_work(long n)
{
	assert_one_thread("child");
	churn(n);
	void *volatile leak = malloc(64);
	(void)leak;
	printf("ok child done\n");
	fflush(stdout);
	_exit(0);
}

static __attribute__((noinline)) void *thread_work(void *arg)
{
	churn(*(long *)arg);
	void *volatile leak = malloc(32);
	return (void *)leak;
}

static __attribute__((noinline)) void park_work(void)
{
	static void *keep[1000];
	for (int i = 0; i < 2000; i++) {
		void *p = malloc(24);
		if (i % 2)
			free(p);
		else
			keep[i / 2] = p;
	}
	printf("allocs=2000 frees=1000 ready\n");
	fflush(stdout);
}

static int mode_park(void)
{
	assert_one_thread_stat("parked");
	park_work();
	for (;;) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
		void *volatile p = malloc(16);
		free(p);
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "park"))
		return mode_park();
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	assert_one_thread_stat("parent");
	churn(n);
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0)
		child_work(n);
	int st;
	if (waitpid(pid, &st, 0) != pid || st != 0)
		return 1;
	pthread_t t;
	void *leak;
	if (pthread_create(&t, NULL, thread_work, &n) != 0 ||
	    pthread_join(t, &leak) != 0)
		return 1;
	printf("ok thread done %p\n", leak);
	assert_one_thread("parent again");
	return 0;
}
