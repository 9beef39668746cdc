/* SPDX-License-Identifier: MIT */
/*
 * Built with -O2 -D_FORTIFY_SOURCE=2 (Makefile): read, pread, open with
 * variable flags, fread, fgets and fprintf become __read_chk,
 * __pread64_chk/__pread_chk, __open_2, __fread_chk, __fgets_chk and
 * __fprintf_chk. tests/integ/test_io.py checks the binary really imports
 * them and that each call is in the trace.
 *
 *   io_fortify FILE N   (N: a size the compiler cannot know, e.g. 100)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	size_t n = (size_t)atoi(argv[2]);
	int flags = O_RDWR | (argc > 3 ? O_APPEND : 0);
	char b[256];
	FILE *f = fopen(argv[1], "w");
	fprintf(f, "%s %zu\n", "hello fortify", n);
	fclose(f);
	int fd = open(argv[1], flags);
	if (fd < 0)
		return 1;
	ssize_t r1 = read(fd, b, n);
	ssize_t r2 = pread(fd, b, n, 0);
	close(fd);
	f = fopen(argv[1], "r");
	size_t r3 = fread(b, 1, n, f);
	rewind(f);
	char *r4 = fgets(b, (int)n, f);
	fclose(f);
	printf("%zd %zd %zu %d\n", r1, r2, r3, r4 != NULL);
	return 0;
}
