/*
 * A seccomp filter for a test app that sandboxes itself
 * (tests/apps/namejail.c, jitjail.c): jail(who, f, n) installs the n
 * instructions at f, after no_new_privs, or exits 2 saying why.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void jail(const char *who, struct sock_filter *f, unsigned short n)
{
	struct sock_fprog prog = { n, f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
		fprintf(stderr, "%s: seccomp: ", who);
		perror(NULL);
		exit(2);
	}
}
