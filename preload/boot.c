/* SPDX-License-Identifier: MIT */
/*
 * A bump allocator for the few allocations made while dlsym resolves the
 * real allocator (glibc's dlsym calls calloc). Blocks are never reused;
 * free() ignores them and realloc() copies them out. Each block has a
 * 16-byte header holding its size so realloc and malloc_usable_size work.
 */
#include "state.h"

#include <string.h>

_Alignas(64) unsigned char kp_boot_pool[KP_BOOT_SIZE];
static _Atomic size_t used;

void *kp_boot_alloc(size_t n, size_t align)
{
	if (align < 16)
		align = 16;
	if (n > KP_BOOT_SIZE)
		return NULL;
	size_t old = atomic_load(&used), start, end;
	do {
		start = (old + 16 + align - 1) & ~(align - 1);
		end = start + ((n + 15) & ~(size_t)15);
		if (end > KP_BOOT_SIZE)
			return NULL;
	} while (!atomic_compare_exchange_weak(&used, &old, end));
	memcpy(kp_boot_pool + start - 16, &n, sizeof(n));
	memset(kp_boot_pool + start, 0, n); /* serves calloc too */
	return kp_boot_pool + start;
}

size_t kp_boot_size(const void *p)
{
	size_t n;
	memcpy(&n, (const unsigned char *)p - 16, sizeof(n));
	return n;
}
