/* SPDX-License-Identifier: MIT */
/* One line of a JIT's perf map (perfmap_line.h). No allocation, no libc
 * state: the recorder calls it as the process ends. */
#include "perfmap_line.h"

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A hex number at s[*i..n) followed by one space; *i moves past both. */
static int field(const char *s, size_t n, size_t *i, uint64_t *v)
{
	size_t k = *i, digits = 0;
	uint64_t x = 0;
	if (k + 1 < n && s[k] == '0' && (s[k + 1] == 'x' || s[k + 1] == 'X'))
		k += 2;
	for (int d; k < n && (d = hex_digit(s[k])) >= 0; k++, digits++) {
		if (x >> 60)
			return -1; /* past 64 bits */
		x = x << 4 | (uint64_t)d;
	}
	if (!digits || k >= n || s[k] != ' ')
		return -1;
	*i = k + 1;
	*v = x;
	return 0;
}

int kp_perfmap_line(const char *s, size_t n, uint64_t *lo, uint64_t *size,
		    const char **name, size_t *name_len)
{
	size_t i = 0;
	if (field(s, n, &i, lo) < 0 || field(s, n, &i, size) < 0 ||
	    !*size || *lo + *size < *lo)
		return 0;
	if (n > i && s[n - 1] == '\r')
		n--;
	if (n <= i)
		return 0;
	*name = s + i;
	*name_len = n - i > KP_PERFMAP_NAME_MAX ? KP_PERFMAP_NAME_MAX : n - i;
	return 1;
}
