/* Fuzz target: the calibration cache. The input is opened without a model, then every
 * record is verified and every site loaded.
 *
 * Every byte of a cache is covered by a checksum, so a mutated input would almost
 * always stop at the header checksum. Before the input is opened, the target
 * therefore rewrites the checksum of each record whose bounds lie in the input, then
 * the header checksum, wherever the sizes in the header allow it. The checksum checks
 * themselves are covered by tests/test_calib.c. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/calib_cache.h"
#include "catscope/hash.h"
#include "../src/calib/cache_format.h"
#include "fuzz_common.h"

static void
fix_checksums(unsigned char *b, size_t size)
{
	uint64_t header_size, n_sites, provenance_size, index;

	if (size < CACHE_FIXED_SIZE || memcmp(b, CACHE_MAGIC, 8) != 0)
		return;
	header_size = cache_get_u32(b + 12);
	n_sites = cache_get_u32(b + 56);
	provenance_size = cache_get_u32(b + 60);
	index = CACHE_FIXED_SIZE + provenance_size;
	if (header_size > size || header_size < index + CACHE_CHECKSUM_SIZE ||
	    n_sites > (header_size - index - CACHE_CHECKSUM_SIZE) / CACHE_INDEX_ENTRY)
		return;
	for (uint64_t s = 0; s < n_sites; s++) {
		unsigned char *e = b + index + s * CACHE_INDEX_ENTRY;
		uint64_t offset = cache_get_u64(e + CACHE_ENTRY_OFFSET);
		uint64_t length = cache_get_u64(e + CACHE_ENTRY_COMPRESSED);

		if (offset <= size && length <= size - offset)
			cache_put_u64(e + CACHE_ENTRY_CHECKSUM, hash_update(HASH_SEED, b + offset, length));
	}
	cache_put_u64(b + header_size - CACHE_CHECKSUM_SIZE,
		      hash_update(HASH_SEED, b, header_size - CACHE_CHECKSUM_SIZE));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *copy = malloc(size + 1);
	struct error err;
	struct calib_cache *cache;
	const char *path;

	memcpy(copy, data, size);
	fix_checksums(copy, size);
	path = fuzz_memory_file(copy, size);
	free(copy);

	cache = calib_cache_open(path, NULL, &err);
	if (cache == NULL)
		return 0;
	calib_cache_provenance(cache);
	calib_cache_verify(cache, &err);
	for (int block = -1; block <= calib_cache_n_blocks(cache); block++) {
		for (int kind = 0; kind <= SITE_KIND_COUNT; kind++) {
			const struct site_stats *s;
			volatile double sink;

			calib_cache_summary(cache, block, (enum site_kind)kind);
			s = calib_cache_site(cache, block, (enum site_kind)kind, &err);
			if (s != NULL && s->dim > 0) {
				/* The last element of each array, so that a short one is caught. */
				sink = s->second_moment[(size_t)s->dim * s->dim - 1] + s->mean[s->dim - 1] +
				       s->absmax[s->dim - 1];
				if (s->n_sample > 0)
					sink = s->sample[(size_t)s->n_sample * s->dim - 1];
				(void)sink;
			}
			calib_cache_release(cache, block, (enum site_kind)kind);
		}
	}
	calib_cache_close(cache);
	return 0;
}
