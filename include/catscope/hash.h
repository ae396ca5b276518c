/* A fast non-cryptographic 64-bit hash for fingerprints and checksums: it detects
 * accidental change (a flipped byte, another model), not deliberate forgery. */
#ifndef CATSCOPE_HASH_H
#define CATSCOPE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED 0x9e3779b97f4a7c15ull

/* Continues the hash state h over size bytes; start with HASH_SEED. */
uint64_t hash_update(uint64_t h, const void *data, size_t size);

#endif
