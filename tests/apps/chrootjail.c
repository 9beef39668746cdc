/*
 * A child that sandboxes itself the way Firefox's chroot helper does
 * (tests/integ/test_sandboxes.py): forked, it closes every fd above 2
 * that /proc/self/fd lists (kprof's trace among them), chroots to an
 * empty directory (in a user namespace of its own when not root), leaks
 * 77 bytes from chroot_leak and exits:
 *
 *   chrootjail EMPTYDIR [_exit] [after]
 *
 * after: the other order, as daemons do: chroot first, then close every
 * fd above 2 (close_range), once kprof's writer thread of the child, if
 * there is one, has started (it has its own fd table by then).
 *
 * The parent waits for it and prints "child=PID ok".
 */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static __attribute__((noinline)) void *chroot_leak(void)
{
	return malloc(77);
}

static void close_all(void)
{
	int fds[4096], n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		exit(3);
	struct dirent *e;
	while ((e = readdir(d)) && n < 4096) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != dirfd(d))
			fds[n++] = fd;
	}
	closedir(d);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Wait (5 s at most) until a thread of this process is named
 * kprof-writer, when LD_PRELOAD is set. */
static void wait_writer(void)
{
	if (!getenv("LD_PRELOAD"))
		return;
	for (int i = 0; i < 5000; i++) {
		DIR *d = opendir("/proc/self/task");
		if (!d)
			return;
		struct dirent *e;
		int seen = 0;
		while (!seen && (e = readdir(d))) {
			char path[300], comm[32] = "";
			snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
				 e->d_name);
			int fd = open(path, O_RDONLY);
			if (fd < 0)
				continue;
			ssize_t n = read(fd, comm, sizeof(comm) - 1);
			close(fd);
			seen = n > 0 && !strncmp(comm, "kprof-writer", 12);
		}
		closedir(d);
		if (seen)
			return;
		usleep(1000);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int after = 0, quick = 0;
	for (int i = 2; i < argc; i++) {
		after |= !strcmp(argv[i], "after");
		quick |= !strcmp(argv[i], "_exit");
	}
	free(malloc(10));
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		if (geteuid() != 0 && unshare(CLONE_NEWUSER) != 0) {
			perror("chrootjail: unshare");
			_exit(4);
		}
		if (after)
			wait_writer();
		else
			close_all();
		if (chroot(argv[1]) != 0 || chdir("/") != 0) {
			perror("chrootjail: chroot");
			_exit(5);
		}
		if (after)
			close_range(3, ~0u, 0);
		void *volatile p = chroot_leak();
		(void)p;
		if (quick)
			_exit(0);
		exit(0);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr, "chrootjail: child status %#x\n", st);
		return 1;
	}
	printf("child=%d ok\n", (int)pid);
	return 0;
}
