/* SPDX-License-Identifier: MIT */
/*
 * denysys CALL[,CALL...] PROG [ARGS...]: runs PROG with each named system
 * call failing with EPERM, as a sandbox's seccomp filter makes calls it
 * does not allow fail (the filter stays across exec; PROG's threads and
 * children inherit it). The names it knows are in `calls` below.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct {
	const char *name;
	int nr;
} calls[] = {
	{ "clone3", SYS_clone3 },
	{ "close_range", SYS_close_range },
	{ "getppid", SYS_getppid },
	{ "prctl", SYS_prctl },
	{ "process_vm_readv", SYS_process_vm_readv },
	{ "readlinkat", SYS_readlinkat },
	{ "rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo },
	{ "timer_create", SYS_timer_create },
	{ "unshare", SYS_unshare },
};

int main(int argc, char **argv)
{
	struct sock_filter f[2 + 2 * 16];
	unsigned n = 0;
	char names[256];

	if (argc < 3) {
		fprintf(stderr, "usage: denysys CALL[,CALL...] PROG [ARGS...]\n");
		return 64;
	}
	snprintf(names, sizeof(names), "%s", argv[1]);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		offsetof(struct seccomp_data, nr));
	for (char *c = strtok(names, ","); c; c = strtok(NULL, ",")) {
		int nr = -1;
		for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
			if (!strcmp(calls[i].name, c))
				nr = calls[i].nr;
		if (nr < 0 || n + 3 > sizeof(f) / sizeof(f[0])) {
			fprintf(stderr, "denysys: unknown system call %s\n", c);
			return 64;
		}
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
						      (unsigned)nr, 0, 1);
		f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
			SECCOMP_RET_ERRNO | EPERM);
	}
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
					      SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { (unsigned short)n, f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		perror("denysys: seccomp");
		return 65;
	}
	execvp(argv[2], argv + 2);
	perror("denysys: exec");
	return 66;
}
