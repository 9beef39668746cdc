/*
 * The app behaves as without kprof (tests/integ/test_invariants.py).
 * Modes (argv[1]):
 *
 *   mallinfo   mallinfo2().uordblks before and after malloc(1000) (and after
 *              freeing it): prints "grow=G back=B usable=U"; under kprof the
 *              same as without (same allocator: glibc's, not jemalloc's).
 *   fds        allocates (from this and from a second thread, so kprof is
 *              fully started), then lists /proc/self/fd: one line per fd
 *              other than 0..2 and the listing's own,
 *              "fd=N cloexec=C target=PATH"; then opens /dev/null and prints
 *              "first_free=N" (the lowest free fd: 3 when kprof holds none
 *              below). Then "done".
 *   signals    allocates (and in a thread), installs its own handler for
 *              SIGUSR1 only, then prints "nondefault=SIG" for every signal
 *              whose disposition is not SIG_DFL (as sigaction answers),
 *              the kernel's mask of caught signals ("SigCgt: ..." of
 *              /proc/self/status) and "done".
 *   status N   prints a fixed text (a few lines, with stdio) and exits N.
 */
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *fmt, long a, long b)
{
	char buf[1400];
	int n = snprintf(buf, sizeof(buf), fmt, a, b);
	(void)!write(1, buf, (size_t)n);
}

static void *thread_alloc(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		free(malloc(64));
	return NULL;
}

static void warm_up(void)
{
	for (int i = 0; i < 1000; i++)
		free(malloc(128));
	pthread_t t;
	pthread_create(&t, NULL, thread_alloc, NULL);
	pthread_join(t, NULL);
	usleep(300 * 1000); /* the writer thread has flushed by now */
}

static int mode_mallinfo(void)
{
	void *warm = malloc(10); /* the heap exists */
	struct mallinfo2 a = mallinfo2();
	void *p = malloc(1000);
	struct mallinfo2 b = mallinfo2();
	size_t usable = malloc_usable_size(p);
	free(p);
	struct mallinfo2 c = mallinfo2();
	free(warm);
	say("grow=%ld back=%ld", (long)(b.uordblks - a.uordblks),
	    (long)(c.uordblks - a.uordblks));
	say(" usable=%ld%.0ld\n", (long)usable, 0);
	return 0;
}

static int mode_fds(void)
{
	warm_up();
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 2;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == dirfd(d))
			continue;
		char path[64], target[1024];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t k = readlink(path, target, sizeof(target) - 1);
		target[k > 0 ? k : 0] = '\0';
		int fl = fcntl(fd, F_GETFD);
		char line[1200];
		snprintf(line, sizeof(line), "fd=%d cloexec=%d target=%s\n", fd,
			 fl >= 0 && (fl & FD_CLOEXEC) ? 1 : 0, target);
		(void)!write(1, line, strlen(line));
	}
	closedir(d);
	int fd = open("/dev/null", O_RDONLY);
	say("first_free=%ld%.0ld\ndone\n", fd, 0);
	return 0;
}

static void on_usr1(int s) { (void)s; }

static int mode_signals(void)
{
	warm_up();
	signal(SIGUSR1, on_usr1);
	for (int s = 1; s < NSIG; s++) {
		struct sigaction sa;
		if (sigaction(s, NULL, &sa) != 0)
			continue; /* 32, 33: glibc's own */
		if (sa.sa_handler != SIG_DFL)
			say("nondefault=%ld%.0ld\n", s, 0);
	}
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	char *c = strstr(buf, "SigCgt:");
	if (c) {
		c[strcspn(c, "\n")] = '\0';
		(void)!write(1, c, strlen(c));
		(void)!write(1, "\n", 1);
	}
	say("done%.0ld%.0ld\n", 0, 0);
	return 0;
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	if (!strcmp(m, "mallinfo"))
		return mode_mallinfo();
	if (!strcmp(m, "fds"))
		return mode_fds();
	if (!strcmp(m, "signals"))
		return mode_signals();
	if (!strcmp(m, "status") && argc > 2) {
		printf("line one\n");
		for (int i = 0; i < 10; i++)
			printf("value %d = %d\n", i, i * i);
		fprintf(stderr, "to stderr\n");
		return atoi(argv[2]);
	}
	return 64;
}
