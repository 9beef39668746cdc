/* SPDX-License-Identifier: MIT */
/*
 * Known I/O for tests/integ/test_io.py.
 *
 *   io_known DIR known   a file DIR/data with exact writes, syncs and
 *                        reads (see the comments for the offsets and the
 *                        Darshan classification), and DIR/log.txt by stdio
 *   io_known DIR errno   failing and short calls; checks errno itself
 *   io_known DIR relpaths  opens of relative paths that do not exist (run
 *                        in DIR): open "nofile", "./dotted"; openat of
 *                        DIR/sub: "none", "../up"; fopen "nofopen"; each
 *                        checked to fail with ENOENT
 *   io_known DIR pipe    a read on a pipe whose writer writes after 20 ms;
 *                        prints the app's own clock_gettime of the read
 *   io_known DIR calls N N write+read+lseek rounds on DIR/c (strace -c)
 *   io_known DIR small N N writes of 64 bytes to DIR/s (the bench)
 *   io_known DIR smallab N  the same in blocks of 1,000 alternating
 *                        write() (through kprof's hook) and the raw system
 *                        call (never hooked): the hook's cost in one
 *                        process (abpairs.h)
 *   io_known DIR fork    opens DIR/forked, forks; the child writes 3 x 100
 *                        bytes to it, the parent waits and writes 1
 *   io_known DIR threads 4 threads x 500 writes of 10 bytes to DIR/shared
 *   io_known DIR exec    writes 100 bytes to DIR/pre, then execs /bin/true
 *   io_known DIR misc    one call of each remaining interposer on DIR/m
 *                        (see misc()), and a socket pair's traffic
 *   io_known DIR direct, cancel_self, cancel_read: see direct()
 *   io_known DIR paths N N writes from two call paths (see paths())
 *   io_known DIR bad     the findings: 2000 writes of 10 bytes to DIR/small,
 *                        20 x (write + fsync) to DIR/synced, 200 reads of
 *                        4 KiB at scattered offsets of a 2 MiB DIR/big,
 *                        5 opens of DIR/missing (ENOENT) and 2 of
 *                        DIR/small/x (ENOTDIR), 3 writes to DIR/readonly
 *                        opened O_RDONLY (EBADF); then calls that would
 *                        block: 1200 reads of an empty non-blocking pipe
 *                        and 3 accepts on a non-blocking listening socket
 *                        (EAGAIN); 1,200 sends of 10 bytes on a socket
 *                        (and their receives); 200 reads of a byte from
 *                        a pipe whose writer sleeps 2 ms before 20 of
 *                        its 200 writes (calls that wait for the peer),
 *                        then an lseek of it (ESPIPE, as gnulib's
 *                        close_stdin asks at exit) and an fsync (EINVAL);
 *                        a read of a pty whose other side closed (EIO);
 *                        DIR/twice opened and closed twice (EBADF), and
 *                        a loop closing fds 100 to 299, not open (EBADF;
 *                        150 was DIR/swept, closed before the loop);
 *                        DIR/excl made, then 3 opens of it with O_CREAT |
 *                        O_EXCL (EEXIST)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "abpairs.h"

static char buf[1 << 20];
static int fails;

static void check(int cond, const char *what)
{
	printf("%s %s\n", cond ? "ok" : "FAIL", what);
	fails += !cond;
}

static void known(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/data", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	memset(buf, 'x', 65536);
	/* 8 writes of 4096 at 0, 4096, ... 28672: consecutive */
	for (int i = 0; i < 8; i++)
		write(fd, buf, 4096);
	/* 4 pwrites of 4096 at 32768 ... 45056: consecutive */
	for (int i = 0; i < 4; i++)
		pwrite(fd, buf, 4096, 32768 + 4096 * i);
	/* to the end (49152), then 2 writevs of 2 x 2048: consecutive */
	lseek(fd, 0, SEEK_END);
	struct iovec iov[2] = { { buf, 2048 }, { buf, 2048 } };
	writev(fd, iov, 2);
	writev(fd, iov, 2);
	for (int i = 0; i < 3; i++)
		fsync(fd);
	/* reads: 4 x 4096 from 0 (consecutive), pread 40960 (sequential),
	 * pread 8192 (random), readv 2 x 1024 at the tracked 16384
	 * (sequential), pread 0 (random): 8 reads, 6 sequential, 4
	 * consecutive, 2 random; re-read: 8192..12287 and 0..4095 = 8192 */
	lseek(fd, 0, SEEK_SET);
	for (int i = 0; i < 4; i++)
		read(fd, buf, 4096);
	pread(fd, buf, 4096, 40960);
	pread(fd, buf, 4096, 8192);
	struct iovec riov[2] = { { buf, 1024 }, { buf + 1024, 1024 } };
	readv(fd, riov, 2);
	pread(fd, buf, 4096, 0);
	close(fd);

	snprintf(path, sizeof(path), "%s/log.txt", dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 10; i++)
		fprintf(f, "line %02d\n", i); /* 8 bytes */
	for (int i = 0; i < 5; i++)
		fwrite(buf, 1, 100, f);
	/* volatile: the compiler would turn a constant fputs into fwrite */
	const char *volatile hello = "hello\n";
	fputs(hello, f);
	fputs(hello, f);
	fclose(f);
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void relpaths(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/sub", dir);
	check(mkdir(path, 0700) == 0, "mkdir DIR/sub");
	int dfd = open(path, O_RDONLY | O_DIRECTORY);
	check(dfd >= 0, "DIR/sub opened");
	errno = 0;
	check(open("nofile", O_RDONLY) == -1 && errno == ENOENT, "nofile: ENOENT");
	errno = 0;
	check(open("./dotted", O_RDONLY) == -1 && errno == ENOENT, "./dotted: ENOENT");
	errno = 0;
	check(openat(dfd, "none", O_RDONLY) == -1 && errno == ENOENT, "sub/none: ENOENT");
	errno = 0;
	check(openat(dfd, "../up", O_RDONLY) == -1 && errno == ENOENT, "../up: ENOENT");
	errno = 0;
	check(fopen("nofopen", "r") == NULL && errno == ENOENT, "nofopen: ENOENT");
	close(dfd);
}

static void errnos(void)
{
	char b[100];
	errno = 0;
	ssize_t r = read(-1, b, 10);
	check(r == -1 && errno == EBADF, "read(-1): EBADF");
	errno = 0;
	r = write(12345, b, 10);
	check(r == -1 && errno == EBADF, "write(12345): EBADF");

	int p[2];
	pipe2(p, O_NONBLOCK);
	errno = 0;
	r = read(p[0], b, sizeof(b));
	check(r == -1 && errno == EAGAIN, "empty non-blocking pipe: EAGAIN");
	/* short read: 10 bytes there, 100 asked */
	write(p[1], "0123456789", 10);
	r = read(p[0], b, 100);
	check(r == 10, "short read: 10 of 100");
	/* short write: a non-blocking pipe takes what fits */
	r = write(p[1], buf, sizeof(buf));
	printf("short write %zd of %zu\n", r, sizeof(buf));
	check(r > 0 && (size_t)r < sizeof(buf), "short write");
	close(p[0]);
	close(p[1]);

	/* EINTR: a blocking read interrupted by a handler without
	 * SA_RESTART */
	pipe(p);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 0 }, { 0, 50000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	errno = 0;
	r = read(p[0], b, sizeof(b));
	check(r == -1 && errno == EINTR, "interrupted read: EINTR");
	/* errno untouched by a successful call */
	errno = 1234;
	write(p[1], "x", 1);
	check(errno == 1234, "a successful write leaves errno alone");
	close(p[0]);
	close(p[1]);

	/* a stream without an fd (fileno fails on it inside kprof) */
	char mem[64];
	FILE *m = fmemopen(mem, sizeof(mem), "w");
	errno = 4321;
	fwrite("abc", 1, 3, m);
	fprintf(m, "%d", 42);
	fflush(m);
	fclose(m);
	check(errno == 4321, "stdio on a memory stream leaves errno alone");
}

static int pfd[2];

static void *late_writer(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	write(pfd[1], "z", 1);
	return NULL;
}

static uint64_t ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pipe_latency(void)
{
	pipe(pfd);
	char c;
	pthread_t th;
	pthread_create(&th, NULL, late_writer, NULL);
	uint64_t t0 = ns();
	ssize_t r = read(pfd[0], &c, 1);
	uint64_t t1 = ns();
	pthread_join(th, NULL);
	printf("read %zd in %llu ns\n", r, (unsigned long long)(t1 - t0));
}

static void calls(const char *dir, int n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/c", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (int i = 0; i < n; i++) {
		write(fd, buf, 512);
		lseek(fd, -512, SEEK_CUR);
		read(fd, buf, 512);
	}
	fsync(fd);
	close(fd);
}

static void small(const char *dir, int n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/s", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	uint64_t t0 = ns();
	for (int i = 0; i < n; i++)
		write(fd, buf, 64);
	uint64_t t1 = ns();
	close(fd);
	/* the app thread's own time per call (the writer thread's work is
	 * elsewhere when a core is free) */
	printf("%.1f ns per write\n", (double)(t1 - t0) / n);
}

static void small_block(void *arg, int direct, long n)
{
	int fd = *(int *)arg;
	for (long i = 0; i < n; i++) {
		if (direct)
			syscall(SYS_write, fd, buf, 64);
		else
			write(fd, buf, 64);
	}
}

static void smallab(const char *dir, int n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/s", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ab_pairs(small_block, &fd, n / 2000, 1000))
		fails++;
	close(fd);
}

static void forked(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/forked", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < 3; i++)
			write(fd, buf, 100);
		exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	write(fd, buf, 1);
	close(fd);
}

static int shared_fd;

static void *writer_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 500; i++)
		write(shared_fd, buf, 10);
	return NULL;
}

static void threads(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/shared", dir);
	shared_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, writer_thread, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	close(shared_fd);
}

static void execs(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/pre", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	write(fd, buf, 100);
	close(fd);
	execl("/bin/true", "true", (char *)NULL);
	exit(3);
}

static void misc(const char *dir)
{
	char path[4096], path2[4096];
	snprintf(path, sizeof(path), "%s/m", dir);
	snprintf(path2, sizeof(path2), "%s/m2", dir);
	int fd = creat(path, 0600);                     /* open */
	posix_fallocate(fd, 0, 8192);                   /* fallocate */
	fallocate(fd, 0, 0, 16384);                     /* fallocate */
	ftruncate(fd, 4096);                            /* ftruncate */
	sync_file_range(fd, 0, 4096, SYNC_FILE_RANGE_WRITE);
	fdatasync(fd);
	int d1 = dup(fd);                               /* open (dup) */
	int d2 = dup2(fd, 100);                         /* open (dup) */
	int d3 = dup3(fd, 101, O_CLOEXEC);              /* open (dup) */
	int d4 = fcntl(fd, F_DUPFD_CLOEXEC, 200);       /* open (dup) */
	write(d1, buf, 10);                             /* write on m */
	close(d1);
	close_range(100, 101, 0);                       /* close x 2 */
	close(d4);
	close(fd);
	(void)d2;
	(void)d3;
	int in = open(path, O_RDONLY);
	int out = open(path2, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	off_t o = 0;
	sendfile(out, in, &o, 100);                     /* sendfile on m2 */
	loff_t oi = 0;
	copy_file_range(in, &oi, out, NULL, 100, 0);    /* on m2 */
	struct iovec iov = { buf, 50 };
	pwritev(out, &iov, 1, 0);
	pwritev2(out, &iov, 1, 50, 0);
	preadv(in, &iov, 1, 0);
	preadv2(in, &iov, 1, -1, 0);                    /* readv (offset -1) */
	close(in);
	close(out);
	/* stdio on m2 */
	FILE *f = fopen(path2, "r+");
	char *line = NULL;
	size_t cap = 0;
	getline(&line, &cap, f);
	getdelim(&line, &cap, 'x', f);
	fflush(f);
	f = freopen(path2, "r", f);
	char b[64];
	fgets(b, sizeof(b), f);
	fclose(f);
	free(line);
	int fd2 = open(path2, O_RDONLY);
	f = fdopen(fd2, "r");
	fread(b, 1, 10, f);
	fclose(f);
	/* a socket, a memfd */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	close(s);
	/* a socket pair's traffic: send 10 + sendto 5 + sendmsg 7 bytes,
	 * received by recv, recvfrom, recvmsg */
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0) {
		char r[16];
		struct iovec v = { buf, 7 }, rv = { r, 7 };
		struct msghdr sm = { .msg_iov = &v, .msg_iovlen = 1 };
		struct msghdr rm = { .msg_iov = &rv, .msg_iovlen = 1 };
		fails += send(sp[0], buf, 10, 0) != 10;
		fails += recv(sp[1], r, 10, MSG_WAITALL) != 10;
		fails += sendto(sp[0], buf, 5, 0, NULL, 0) != 5;
		fails += recvfrom(sp[1], r, 5, MSG_WAITALL, NULL, NULL) != 5;
		fails += sendmsg(sp[0], &sm, 0) != 7;
		fails += recvmsg(sp[1], &rm, MSG_WAITALL) != 7;
		close(sp[0]);
		close(sp[1]);
	} else {
		fails++;
	}
	int m = memfd_create("kpmem", 0);
	write(m, buf, 7);
	void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	if (map != MAP_FAILED) {
		msync(map, 4096, MS_SYNC);                /* msync, <mmap> */
		munmap(map, 4096);
	}
	close(m);
}

/*
 * kprof makes the single-threaded app's read/write/pread/pwrite/readv/
 * writev system calls itself (preload/iohook.h, kp_io_direct): their
 * results and errno, and that a cancelled thread still stops at them.
 *   direct       each of the six, succeeding and failing, in the
 *                process's only thread
 *   cancel_self  the only thread cancels itself (deferred): its next
 *                write() is a cancellation point and does not return
 *   cancel_read  the main thread blocks in read() on a pipe no one writes
 *                to, and a thread it started cancels it
 */
static void direct(const char *dir)
{
	char path[4096], b[16];
	snprintf(path, sizeof(path), "%s/direct", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	struct iovec iov[2] = { { buf, 3 }, { buf, 4 } };
	check(write(fd, "abcdef", 6) == 6, "direct: write");
	check(pwrite(fd, "XY", 2, 1) == 2, "direct: pwrite");
	check(writev(fd, iov, 2) == 7, "direct: writev");
	check(pread(fd, b, 4, 0) == 4 && !memcmp(b, "aXYd", 4),
	      "direct: pread");
	check(lseek(fd, 0, SEEK_SET) == 0 && read(fd, b, 6) == 6 &&
	      !memcmp(b, "aXYdef", 6), "direct: read");
	iov[0].iov_base = b;
	iov[1].iov_base = b + 3;
	check(readv(fd, iov, 2) == 7, "direct: readv");
	close(fd);
	int p[2];
	pipe(p);
	errno = 0;
	check(pwrite(p[1], "x", 1, 0) == -1 && errno == ESPIPE,
	      "direct: pwrite on a pipe: ESPIPE");
	errno = 0;
	check(pread(p[0], b, 1, 0) == -1 && errno == ESPIPE,
	      "direct: pread on a pipe: ESPIPE");
	errno = 0;
	check(readv(12345, iov, 2) == -1 && errno == EBADF,
	      "direct: readv(12345): EBADF");
	errno = 0;
	volatile int nvec = -1;
	check(writev(p[1], iov, nvec) == -1 && errno == EINVAL,
	      "direct: writev of -1 vectors: EINVAL");
	errno = 1234;
	check(write(p[1], "x", 1) == 1 && errno == 1234,
	      "direct: errno untouched by a write that succeeds");
	close(p[0]);
	close(p[1]);
}

static void cancelled(void *what)
{
	printf("ok cancelled at %s\n", (const char *)what);
	fflush(stdout);
	_exit(fails ? 1 : 0);
}

static void cancel_self(void)
{
	int fd = open("/dev/null", O_WRONLY);
	for (int i = 0; i < 10; i++)
		write(fd, buf, 8);
	pthread_cleanup_push(cancelled, "write");
	pthread_cancel(pthread_self());
	write(fd, buf, 8);
	check(0, "write() returned after the thread cancelled itself");
	pthread_cleanup_pop(0);
}

static void *canceller(void *main_thread)
{
	pthread_cancel(*(pthread_t *)main_thread);
	return NULL;
}

static void cancel_read(void)
{
	int p[2];
	char b[8];
	pipe(p);
	for (int i = 0; i < 8; i++)
		write(p[1], "x", 1);
	read(p[0], b, sizeof(b)); /* all 8: the pipe is empty now */
	static pthread_t self;
	self = pthread_self();
	pthread_t th;
	pthread_cleanup_push(cancelled, "read");
	pthread_create(&th, NULL, canceller, &self);
	read(p[0], b, sizeof(b)); /* blocks until cancelled */
	check(0, "read() returned in a cancelled thread");
	pthread_cleanup_pop(0);
}

/* paths N: N writes from two call paths in turn, each a frame of the same
 * size at the same depth (the thread's remembered walk starts at the same
 * place for both: the return addresses tell them apart) */
static void path_write(int fd, int i)
{
	char b[32];
	snprintf(b, sizeof(b), "%d\n", i);
	write(fd, b, strlen(b));
}

static void path_a(int fd, int i)
{
	path_write(fd, i);
}

static void path_b(int fd, int i)
{
	path_write(fd, i);
}

static void paths(const char *dir, int n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/paths", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (int i = 0; i < n; i++)
		(i % 3 == 2 ? path_b : path_a)(fd, i);
	close(fd);
}

static _Atomic int pipe_got; /* bytes the reader has read */

/* 200 writes of a byte; before 20 of them, once the reader has read all
 * before and waits in read, a sleep of 2 ms */
static void *slow_writer(void *fd)
{
	for (int i = 0; i < 200; i++) {
		if (i % 10 == 5) {
			while (atomic_load(&pipe_got) < i)
				sched_yield();
			struct timespec ts = { 0, 2 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		fails += write(*(int *)fd, "w", 1) != 1;
	}
	return NULL;
}

static void bad(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/small", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (int i = 0; i < 2000; i++)
		write(fd, buf, 10);
	close(fd);
	snprintf(path, sizeof(path), "%s/synced", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (int i = 0; i < 20; i++) {
		write(fd, buf, 100);
		fsync(fd);
	}
	close(fd);
	snprintf(path, sizeof(path), "%s/big", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (int i = 0; i < 2; i++)
		write(fd, buf, sizeof(buf));
	for (int i = 0; i < 200; i++) /* 2 MiB / 4 KiB = 512 blocks */
		pread(fd, buf, 4096, (off_t)((i * 197) % 512) * 4096);
	close(fd);
	snprintf(path, sizeof(path), "%s/missing", dir);
	for (int i = 0; i < 5; i++)
		open(path, O_RDONLY);
	snprintf(path, sizeof(path), "%s/small/x", dir); /* small: a file */
	for (int i = 0; i < 2; i++)
		open(path, O_RDONLY);
	snprintf(path, sizeof(path), "%s/readonly", dir);
	fd = open(path, O_RDONLY | O_CREAT, 0600);
	for (int i = 0; i < 3; i++)
		write(fd, buf, 10); /* EBADF */
	close(fd);

	int pfd[2];
	if (pipe2(pfd, O_NONBLOCK) == 0) {
		for (int i = 0; i < 1200; i++)
			if (read(pfd[0], buf, 10) != -1 || errno != EAGAIN)
				fails++;
		close(pfd[0]);
		close(pfd[1]);
	} else {
		fails++;
	}
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", dir);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(ls, 4) != 0)
		fails++;
	for (int i = 0; i < 3; i++)
		if (accept(ls, NULL, NULL) != -1 || errno != EAGAIN)
			fails++;
	close(ls);
	/* 1,200 sends of 10 bytes on a socket, each received at once:
	 * small writes on a socket */
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0) {
		char r[10];
		for (int i = 0; i < 1200; i++) {
			fails += send(sp[0], buf, 10, 0) != 10;
			fails += recv(sp[1], r, 10, MSG_WAITALL) != 10;
		}
		close(sp[0]);
		close(sp[1]);
	} else {
		fails++;
	}
	/* a close of a file closed already: a bug; closes of fd numbers
	 * never opened: a close-all loop */
	snprintf(path, sizeof(path), "%s/twice", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fails += close(fd) != 0;
	fails += close(fd) != -1 || errno != EBADF;
	/* fd 150 opened and closed first: the loop meets it again */
	snprintf(path, sizeof(path), "%s/swept", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fails += dup2(fd, 150) != 150 || close(fd) != 0 || close(150) != 0;
	for (int i = 100; i < 300; i++)
		fails += close(i) != -1 || errno != EBADF;
	/* exclusive creates of a file that exists: answers, not failures */
	snprintf(path, sizeof(path), "%s/excl", dir);
	fails += close(open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) != 0;
	for (int i = 0; i < 3; i++)
		fails += open(path, O_WRONLY | O_CREAT | O_EXCL, 0600) != -1 ||
			 errno != EEXIST;
	/* a pty's end of file: EIO once its other side is closed */
	int pm = posix_openpt(O_RDWR | O_NOCTTY);
	if (pm >= 0 && grantpt(pm) == 0 && unlockpt(pm) == 0) {
		int ps = open(ptsname(pm), O_RDWR | O_NOCTTY);
		char c;
		fails += ps < 0 || close(ps) != 0;
		fails += read(pm, &c, 1) != -1 || errno != EIO;
		close(pm);
	} else {
		fails++;
	}
	/* 200 reads of a byte, 20 of them waiting 2 ms for the writer */
	int wp[2];
	pthread_t th;
	if (pipe(wp) == 0 &&
	    pthread_create(&th, NULL, slow_writer, &wp[1]) == 0) {
		char c;
		for (int i = 0; i < 200; i++) {
			fails += read(wp[0], &c, 1) != 1;
			atomic_fetch_add(&pipe_got, 1);
		}
		pthread_join(th, NULL);
		fails += lseek(wp[0], 0, SEEK_CUR) != -1 || errno != ESPIPE;
		fails += fsync(wp[1]) != -1 || errno != EINVAL;
		close(wp[0]);
		close(wp[1]);
	} else {
		fails++;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	if (!strcmp(argv[2], "known"))
		known(argv[1]);
	else if (!strcmp(argv[2], "errno"))
		errnos();
	else if (!strcmp(argv[2], "relpaths"))
		relpaths(argv[1]);
	else if (!strcmp(argv[2], "pipe"))
		pipe_latency();
	else if (!strcmp(argv[2], "fork"))
		forked(argv[1]);
	else if (!strcmp(argv[2], "threads"))
		threads(argv[1]);
	else if (!strcmp(argv[2], "exec"))
		execs(argv[1]);
	else if (!strcmp(argv[2], "misc"))
		misc(argv[1]);
	else if (!strcmp(argv[2], "paths"))
		paths(argv[1], argc > 3 ? atoi(argv[3]) : 3000);
	else if (!strcmp(argv[2], "direct"))
		direct(argv[1]);
	else if (!strcmp(argv[2], "cancel_self"))
		cancel_self();
	else if (!strcmp(argv[2], "cancel_read"))
		cancel_read();
	else if (!strcmp(argv[2], "bad"))
		bad(argv[1]);
	else if (!strcmp(argv[2], "small"))
		small(argv[1], argc > 3 ? atoi(argv[3]) : 100000);
	else if (!strcmp(argv[2], "smallab"))
		smallab(argv[1], argc > 3 ? atoi(argv[3]) : 200000);
	else if (!strcmp(argv[2], "calls"))
		calls(argv[1], argc > 3 ? atoi(argv[3]) : 100);
	else
		return 2;
	return fails ? 1 : 0;
}
