/*
 * The analyzer's u64 -> u32 map (tools/analyze/stacks.c): random inserts
 * and deletes (backward-shift deletion) checked against a plain array.
 */
#include <stdint.h>
#include <stdlib.h>

#include "analyze.h"
#include "harness.h"

TEST(insert_delete_random)
{
	enum { KEYS = 5000, OPS = 200000 };
	static uint32_t ref[KEYS]; /* UINT32_MAX: absent */
	struct kp_idmap m;
	uint64_t s = 0x9e3779b97f4a7c15ull;
	size_t n = 0;
	int bad = 0;

	kp_idmap_init(&m);
	for (size_t i = 0; i < KEYS; i++)
		ref[i] = UINT32_MAX;
	for (size_t op = 0; op < OPS && !bad; op++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		/* few distinct keys, clustered, so probe runs collide */
		uint64_t k = (s >> 8) % KEYS;
		uint64_t key = k * 64;
		if (s & 1) {
			if (ref[k] == UINT32_MAX) {
				kp_idmap_put(&m, key, (uint32_t)op);
				ref[k] = (uint32_t)op;
				n++;
			}
		} else {
			int had = ref[k] != UINT32_MAX;
			bad |= kp_idmap_del(&m, key) != had;
			if (had)
				n--;
			ref[k] = UINT32_MAX;
		}
		if (op % 997 == 0)
			for (size_t i = 0; i < KEYS && !bad; i++)
				bad |= kp_idmap_get(&m, i * 64) != ref[i];
	}
	for (size_t i = 0; i < KEYS && !bad; i++)
		bad |= kp_idmap_get(&m, i * 64) != ref[i];
	CHECK(!bad);
	CHECK(m.n == n);
	CHECK(kp_idmap_del(&m, KP_IDMAP_EMPTY) == 0);
	kp_idmap_free(&m);
	CHECK(kp_idmap_del(&m, 1) == 0); /* empty map */
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(insert_delete_random));
}
