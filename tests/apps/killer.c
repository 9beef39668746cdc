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
 *
 *   killer group setpgid|setsid
 *
 * A job in a process group of its own, killed as a shell kills one: a
 * leader child moves to a new group (setpgid(0, 0), which the parent
 * makes too, as a shell does; or setsid()) and forks two members; each
 * of the three sends its pid on a pipe and waits. The parent, a
 * subreaper so that the members come back to it, sends the group SIGKILL
 * with killpg (setpgid) or SIGTERM with kill(-group) (setsid) from
 * kill_group, reaps the three and prints "group=LEADER members=M1,M2".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
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

static __attribute__((noinline)) int kill_group(pid_t group, int sesh)
{
	return sesh ? kill(-group, SIGTERM) : killpg(group, SIGKILL);
}

/* One of the job's processes: its pid on the pipe, then wait. */
static void member(int fd)
{
	pid_t me = getpid();
	if (write(fd, &me, sizeof(me)) != sizeof(me))
		_exit(3);
	for (;;)
		pause();
}

static int group_job(int sesh)
{
	int ready[2];
	if (pipe(ready) || prctl(PR_SET_CHILD_SUBREAPER, 1))
		return 1;
	pid_t leader = fork();
	if (leader < 0)
		return 1;
	if (leader == 0) {
		if (sesh ? setsid() < 0 : setpgid(0, 0) != 0)
			_exit(2);
		for (int i = 0; i < 2; i++) {
			pid_t m = fork();
			if (m < 0)
				_exit(2);
			if (m == 0)
				member(ready[1]);
		}
		member(ready[1]);
	}
	/* the shell's side of setpgid: EACCES once the child has exec'd,
	 * which this one does not */
	if (!sesh && setpgid(leader, leader) != 0)
		return 1;
	pid_t pids[3], members[2];
	int nm = 0;
	for (int i = 0; i < 3; i++) {
		if (read(ready[0], &pids[i], sizeof(pids[i])) != sizeof(pids[i]))
			return 1;
		if (pids[i] != leader && nm < 2)
			members[nm++] = pids[i];
	}
	if (nm != 2)
		return 1;
	usleep(300000); /* their traces flushed what they did */
	if (kill_group(leader, sesh))
		return 1;
	for (int i = 0; i < 3; i++) {
		int st;
		pid_t w = wait(&st);
		if (w < 0 || !WIFSIGNALED(st) ||
		    WTERMSIG(st) != (sesh ? SIGTERM : SIGKILL))
			return 1;
	}
	printf("group=%d members=%d,%d\n", (int)leader, (int)members[0],
	       (int)members[1]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "group"))
		return group_job(!strcmp(argv[2], "setsid"));
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
