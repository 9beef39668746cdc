/* A plugin for tests/apps/dlopener.c: leaks 3 blocks of 555 bytes. */
#include <stdlib.h>

void *plug_a_keep[3];

__attribute__((noinline)) void plugin_a_leak(void)
{
	for (int i = 0; i < 3; i++)
		plug_a_keep[i] = malloc(555);
}
