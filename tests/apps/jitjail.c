/*
 * Allocations from JIT code after the program has sandboxed itself, for
 * kprof's stack capture (tests/integ/test_sandboxes.py): once main has
 * recorded an event, a seccomp filter kills the process at any mincore
 * or msync, as a strict sandbox's may (Firefox's content processes
 * report each mincore as a violation). Then a function written into an
 * anonymous executable mapping (no module, no unwind information, a
 * frame pointer, as JITs keep) calls malloc(4000) 100 times and keeps
 * the blocks: kprof's unwinder hands such stacks to libunwind, which
 * checks memory before it reads it on a frame chain (mincore, then a
 * write to a pipe). Prints "ok".
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "jail.h"

static void *kept[100];

static void jail_mincore(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mincore, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_msync, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	jail("jitjail", f, sizeof(f) / sizeof(f[0]));
}

int main(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *code = mmap(NULL, page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return 1;
	/* push rbp; mov rbp, rsp; movabs rax, malloc; call rax; pop rbp;
	 * ret (rsp 16-aligned at the call) */
	unsigned char *p = code;
	void *(*mallocp)(size_t) = malloc;
	*p++ = 0x55;
	*p++ = 0x48, *p++ = 0x89, *p++ = 0xe5;
	*p++ = 0x48, *p++ = 0xb8;
	memcpy(p, &mallocp, 8);
	p += 8;
	*p++ = 0xff, *p++ = 0xd0;
	*p++ = 0x5d;
	*p++ = 0xc3;
	if (mprotect(code, page, PROT_READ | PROT_EXEC) != 0)
		return 1;
	void *(*jit_alloc)(size_t) = (void *(*)(size_t))(void *)code;

	free(malloc(16)); /* kprof set up, libunwind warmed up */
	jail_mincore();
	for (int i = 0; i < 100; i++)
		if (!(kept[i] = jit_alloc(4000)))
			return 1;
	puts("ok");
	return 0;
}
