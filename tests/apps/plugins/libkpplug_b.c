/* A plugin for tests/apps/dlopener.c: leaks 2 blocks of 777 bytes. */
#include <stdlib.h>

void *plug_b_keep[2];

__attribute__((noinline)) void plugin_b_leak(void)
{
	for (int i = 0; i < 2; i++)
		plug_b_keep[i] = malloc(777);
}
