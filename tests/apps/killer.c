/*
 * A parent that kills its children (tests/integ/test_kill.py), as a
 * pool kills a slow worker:
 *
 *   killer
 *
 * Four children each leak 55 bytes from child_work, say so on a pipe and
 * wait. The parent then probes each with kill(pid, 0), fails to signal a
 * pid that does not exist, and kills child 1 with kill(SIGKILL) from
 * kill_one, child 2 with sigqueue(SIGTERM), child 3 with
 * pidfd_send_signal(SIGKILL); child 4 it tells to exit (status 0). It
 * reaps them and prints "killed=PID1,PID2,PID3 left=PID4".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static __attribute__((noinline)) void *child_work(void)
{
	return malloc(55);
}

static __attribute__((noinline)) int kill_one(pid_t pid)
{
	return kill(pid, SIGKILL);
}

int main(void)
{
	pid_t kids[4];
	int ready[2], go[2];
	if (pipe(ready) || pipe(go))
		return 1;
	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			return 1;
		if (kids[i] == 0) {
			void *volatile p = child_work();
			(void)p;
			char c = 'r';
			if (write(ready[1], &c, 1) != 1)
				_exit(3);
			if (read(go[0], &c, 1) != 1) /* child 4: its cue */
				_exit(4);
			exit(0);
		}
	}
	for (int i = 0; i < 4; i++) {
		char c;
		if (read(ready[0], &c, 1) != 1)
			return 1;
	}
	usleep(300000); /* the children's traces flushed what they did */
	for (int i = 0; i < 4; i++)
		if (kill(kids[i], 0) != 0)
			return 1;
	if (kill(0x7ffffff0, SIGKILL) == 0)
		return 1;
	union sigval v = { .sival_int = 7 };
	int pidfd = (int)syscall(SYS_pidfd_open, kids[2], 0);
	if (kill_one(kids[0]) || sigqueue(kids[1], SIGTERM, v) || pidfd < 0 ||
	    pidfd_send_signal(pidfd, SIGKILL, NULL, 0))
		return 1;
	for (int i = 0; i < 4; i++) {
		/* child 4's cue once the others are gone (one still dying
		 * could take it from the pipe) */
		char c = 'g';
		if (i == 3 && write(go[1], &c, 1) != 1)
			return 1;
		int st;
		if (waitpid(kids[i], &st, 0) != kids[i])
			return 1;
		if ((i < 3) != WIFSIGNALED(st))
			return 1;
	}
	printf("killed=%d,%d,%d left=%d\n", (int)kids[0], (int)kids[1],
	       (int)kids[2], (int)kids[3]);
	return 0;
}
