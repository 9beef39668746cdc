/*
 * A tiny JIT: two x86-64 functions written into an anonymous executable
 * mapping (no module, no unwind information; frame pointers, as JITs
 * keep), named in DIR/perf-<pid>.map the way node --perf-basic-prof and
 * python3.12 -X perf name theirs:
 *
 *   jit_alloc(n)   calls malloc(n) (kprof's, through the preload)
 *   jit_spin(n)    a loop of n additions
 *
 *   jitcode DIR NLEAK MS [kill]
 *
 * leaks NLEAK blocks of 4000 bytes allocated by jit_alloc, then calls
 * jit_spin for MS milliseconds of CPU time, and with "kill" SIGKILLs
 * itself (no exit: kprof cannot copy the map into the trace). The map
 * first names the whole mapping "jit:stale" (code since replaced: the
 * later lines must win).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static const unsigned char spin_code[] = {
	0x55,             /* push rbp */
	0x48, 0x89, 0xe5, /* mov rbp, rsp */
	0x48, 0x31, 0xc0, /* xor rax, rax */
	0x48, 0x01, 0xf8, /* 1: add rax, rdi */
	0x48, 0xff, 0xcf, /* dec rdi */
	0x75, 0xf8,       /* jnz 1b */
	0x5d,             /* pop rbp */
	0xc3,             /* ret */
};

static double cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: jitcode DIR NLEAK MS [kill]\n");
		return 2;
	}
	int nleak = atoi(argv[2]);
	double ms = atof(argv[3]);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *code = mmap(NULL, page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return 1;

	/* jit_alloc at 0: push rbp; mov rbp, rsp; movabs rax, malloc;
	 * call rax; pop rbp; ret (rsp 16-aligned at the call) */
	unsigned char *alloc_fn = code, *p = code;
	void *(*mallocp)(size_t) = malloc;
	*p++ = 0x55;
	*p++ = 0x48, *p++ = 0x89, *p++ = 0xe5;
	*p++ = 0x48, *p++ = 0xb8;
	memcpy(p, &mallocp, 8);
	p += 8;
	*p++ = 0xff, *p++ = 0xd0;
	*p++ = 0x5d;
	*p++ = 0xc3;
	size_t alloc_len = (size_t)(p - code);
	unsigned char *spin_fn = code + 64;
	memcpy(spin_fn, spin_code, sizeof(spin_code));
	if (mprotect(code, page, PROT_READ | PROT_EXEC) != 0)
		return 1;

	char path[4096];
	snprintf(path, sizeof(path), "%s/perf-%d.map", argv[1], (int)getpid());
	FILE *map = fopen(path, "w");
	if (!map)
		return 1;
	fprintf(map, "%lx %zx jit:stale\n", (unsigned long)code, page);
	fprintf(map, "%lx %zx jit:alloc\n", (unsigned long)alloc_fn,
		alloc_len);
	fprintf(map, "%lx %zx jit:spin [hot loop]\n", (unsigned long)spin_fn,
		sizeof(spin_code));
	fclose(map);

	void *(*jit_alloc)(size_t) = (void *(*)(size_t))(void *)alloc_fn;
	uint64_t (*jit_spin)(uint64_t) = (uint64_t(*)(uint64_t))(void *)spin_fn;
	for (int i = 0; i < nleak; i++)
		if (!jit_alloc(4000))
			return 1;
	uint64_t sum = 0;
	double t0 = cpu_ms();
	while (cpu_ms() - t0 < ms)
		sum += jit_spin(1000000);
	printf("ok %d %llu\n", nleak, (unsigned long long)(sum != 0));
	fflush(stdout);
	if (argc == 5 && !strcmp(argv[4], "kill"))
		raise(SIGKILL);
	return 0;
}
