/* The calibration cache file: statistics of every site plus where they came from.
 * The byte layout is in catscope-cache(5).
 *
 * Opening reads only the header and the index and checks their checksum; a site's
 * record is read, checked and decompressed the first time calib_cache_site requests
 * it. Every byte of the file is covered by the header checksum or by a record
 * checksum, so calib_cache_verify finds any flipped byte. */
#ifndef CATSCOPE_CALIB_CACHE_H
#define CATSCOPE_CALIB_CACHE_H

#include <stdint.h>

#include "catscope/calib.h"
#include "catscope/error.h"
#include "catscope/model.h"
#include "catscope/sitestats.h"

/* The per-site summary stored in the index, readable without loading the record. */
struct calib_site_summary {
	int block;
	enum site_kind kind;
	int dim;
	int n_sample;
	uint64_t n_tokens;
	uint64_t nonfinite;
	double mean_sq_norm;
	double mean_sq_range_sym;
	double mean_sq_range_asym;
	float max_absmax;          /* the largest channel absmax */
	int max_absmax_channel;    /* its channel index */
	uint64_t compressed_size;  /* bytes of the record in the file */
	uint64_t raw_size;         /* bytes after decompression */
};

struct calib_cache;

/* Writes result to path atomically: a reader sees the old file or the complete new one,
 * and a failure or a deferred signal (atomic_interrupted) leaves no temporary file.
 * The output depends only on result, so equal inputs give byte-identical files. */
int calib_cache_write(const char *path, const struct calib_result *result, struct error *err);

/* Fails unless path is absent, empty or a file that starts with the cache magic
 * (following a symbolic link), so that writing a cache never replaces a model, a text
 * or another file given by mistake. */
int calib_cache_check_replaceable(const char *path, struct error *err);

/* Opens a cache and checks its header and index. With model not NULL, rejects a cache
 * made for another model (fingerprint or shapes). Caller frees with calib_cache_close(). */
struct calib_cache *calib_cache_open(const char *path, const struct model *model,
				     struct error *err);
void calib_cache_close(struct calib_cache *cache);

/* Returns a site's statistics, loading and checking its record on first use, or NULL
 * with err set (unknown site, corrupt record). Borrowed: valid until calib_cache_close
 * or calib_cache_release of that site. */
const struct site_stats *calib_cache_site(struct calib_cache *cache, int block,
					  enum site_kind kind, struct error *err);
/* Frees a loaded site's arrays; the next calib_cache_site reloads it. */
void calib_cache_release(struct calib_cache *cache, int block, enum site_kind kind);

/* Checks the checksum of every record without decompressing; names the first corrupt
 * one. */
int calib_cache_verify(struct calib_cache *cache, struct error *err);

/* Borrowed, valid until calib_cache_close. */
const struct calib_provenance *calib_cache_provenance(const struct calib_cache *cache);
int calib_cache_n_blocks(const struct calib_cache *cache);
const struct calib_site_summary *calib_cache_summary(const struct calib_cache *cache, int block,
						     enum site_kind kind);

#endif
