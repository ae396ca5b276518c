/* Internal to the calib part: the byte layout of the cache file, as documented in
 * catscope-cache(5). All numbers are little-endian; the helpers below encode them
 * byte by byte, so the format does not depend on the host. */
#ifndef CATSCOPE_CACHE_FORMAT_H
#define CATSCOPE_CACHE_FORMAT_H

#include <stdint.h>
#include <string.h>

#define CACHE_MAGIC "CSCALIB"          /* 8 bytes with its NUL */
#define CACHE_VERSION 1
#define CACHE_FIXED_SIZE 64            /* magic .. provenance_size */
#define CACHE_PROVENANCE_FIXED 48      /* n_tokens .. version, before the text entries */
#define CACHE_TEXT_FIXED 20            /* size, hash, name length */
#define CACHE_INDEX_ENTRY 96
#define CACHE_CHECKSUM_SIZE 8

/* Limits on values read from a file, checked before any buffer is sized by them. */
#define CACHE_MAX_SITES (4 * 4096)
#define CACHE_MAX_PROVENANCE (1u << 20)
#define CACHE_MAX_NAME 4096
#define CACHE_MAX_DIM (1 << 18)
#define CACHE_ZSTD_LEVEL 3
#define CACHE_ZSTD_WINDOW_LOG_MAX 24 /* 16 MiB, 8 times the window level 3 uses */
/* How far a record may expand on decompression. Records of real caches expand 1.06 to
 * 5.2 times (a stories260K cache of 2048 tokens), while a frame of zstd RLE blocks
 * expands about 30000 times, so a small file could ask for gigabytes. Records up to
 * CACHE_EXPANSION_FREE bytes are always loaded. The environment variable
 * CACHE_EXPANSION_VARIABLE raises the ratio. */
#define CACHE_MAX_EXPANSION 32
#define CACHE_EXPANSION_FREE (32u << 20)
#define CACHE_EXPANSION_VARIABLE "CATSCOPE_CACHE_MAX_EXPANSION"

/* Byte offsets of the index entry fields. */
enum {
	CACHE_ENTRY_BLOCK = 0,
	CACHE_ENTRY_KIND = 4,
	CACHE_ENTRY_DIM = 8,
	CACHE_ENTRY_N_SAMPLE = 12,
	CACHE_ENTRY_OFFSET = 16,
	CACHE_ENTRY_COMPRESSED = 24,
	CACHE_ENTRY_RAW = 32,
	CACHE_ENTRY_CHECKSUM = 40,
	CACHE_ENTRY_N_TOKENS = 48,
	CACHE_ENTRY_NONFINITE = 56,
	CACHE_ENTRY_SQ_NORM = 64,
	CACHE_ENTRY_SQ_RANGE_SYM = 72,
	CACHE_ENTRY_SQ_RANGE_ASYM = 80,
	CACHE_ENTRY_MAX_ABSMAX = 88,
	CACHE_ENTRY_MAX_ABSMAX_CHANNEL = 92,
};

/* Bytes of a decompressed record: mean (f64), absmax (f32), the upper triangle of
 * E[x x^T] row by row (f32) and the sample (f32). */
static inline uint64_t
cache_record_raw_size(uint64_t dim, uint64_t n_sample)
{
	return dim * 8 + dim * 4 + dim * (dim + 1) / 2 * 4 + n_sample * dim * 4;
}

static inline void
cache_put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void
cache_put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void
cache_put_f32(unsigned char *p, float v)
{
	uint32_t bits;

	memcpy(&bits, &v, 4);
	cache_put_u32(p, bits);
}

static inline void
cache_put_f64(unsigned char *p, double v)
{
	uint64_t bits;

	memcpy(&bits, &v, 8);
	cache_put_u64(p, bits);
}

static inline uint32_t
cache_get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static inline uint64_t
cache_get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline float
cache_get_f32(const unsigned char *p)
{
	uint32_t bits = cache_get_u32(p);
	float v;

	memcpy(&v, &bits, 4);
	return v;
}

static inline double
cache_get_f64(const unsigned char *p)
{
	uint64_t bits = cache_get_u64(p);
	double v;

	memcpy(&v, &bits, 8);
	return v;
}

#endif
