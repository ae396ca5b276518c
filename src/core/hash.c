#include "config.h"

#include <string.h>

#include "catscope/hash.h"

static uint64_t
hash_mix(uint64_t x)
{
	/* The splitmix64 finaliser: every input bit affects every output bit. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t
hash_update(uint64_t h, const void *data, size_t size)
{
	const unsigned char *p = data;
	size_t i = 0;

	for (; i + 8 <= size; i += 8) {
		uint64_t word;

		memcpy(&word, p + i, 8);
		h = hash_mix(h ^ word) + 0x632be59bd9b4e019ull;
	}
	if (i < size) {
		uint64_t word = 0;

		memcpy(&word, p + i, size - i);
		h = hash_mix(h ^ word ^ ((uint64_t)(size - i) << 56));
	}
	return hash_mix(h ^ (uint64_t)size);
}
