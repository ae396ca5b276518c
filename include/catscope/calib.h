/* Calibration: runs the model over a token stream and accumulates, for every quantized
 * input site of every block, the statistics of struct site_stats.
 *
 * Windowing is the one eval uses: the text is tokenized once with BOS at the start
 * only, cut into non-overlapping windows of ctx tokens, the remainder dropped, and each
 * window runs on its own (empty KV cache). The site hook converts each window's n x d
 * batch to double and adds X^T X to a double accumulator with one SYRK call. Products
 * of two floats are exact in double, so the only rounding is the double summation:
 * about 1e-16 relative per addition, far below the float32 precision of the
 * activations themselves.
 *
 * Memory does not grow with the number of tokens: it is the model, one window in
 * flight, and per site a d x d double accumulator, three d-vectors and the reservoir
 * (sample_size x d floats).
 *
 * NOTE: all sites of all blocks are accumulated at once, which needs
 * n_layers x (3 dim^2 + hidden_dim^2) x 8 bytes, about 64 GB for an 8B-class model
 * (32 blocks, d 4096, d_ff 14336). A larger model can be calibrated block by block
 * later: run the windows once per group of blocks, keep the residual stream of every
 * window at the group's entry on disk (tokens x dim floats), and accumulate only the
 * group's sites. The cache format already stores each site as its own record, so the
 * writer can append groups as they finish. */
#ifndef CATSCOPE_CALIB_H
#define CATSCOPE_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"
#include "catscope/model.h"
#include "catscope/progress.h"
#include "catscope/sitestats.h"

#define CALIB_DEFAULT_CTX 512
#define CALIB_DEFAULT_SAMPLE 1024

struct calib_options {
	uint64_t max_tokens; /* use at most this many tokens (whole windows); 0 means all */
	int sample_size;     /* reservoir rows kept per site; 0 keeps none */
	uint64_t seed;       /* seeds the reservoir; the same seed selects the same tokens */
};

/* One text file that went into a calibration, identified by its bytes. */
struct calib_text {
	char *name;     /* as given on the command line */
	uint64_t size;  /* bytes */
	uint64_t hash;  /* hash_update(HASH_SEED, bytes) */
};

/* Origin of a calibration, stored in the cache header. */
struct calib_provenance {
	uint64_t fingerprint;        /* model->fingerprint */
	struct model_config config;  /* shapes of the calibrated model */
	int n_texts;
	struct calib_text *texts;
	uint64_t n_tokens;           /* tokens run through the model: windows x ctx */
	int ctx;                     /* window length */
	int n_windows;
	uint64_t seed;
	int sample_size;             /* requested reservoir rows per site */
	char version[16];            /* catscope version that wrote it */
};

/* The statistics of every site: sites[block * SITE_KIND_COUNT + kind]. */
struct calib_result {
	int n_blocks;
	struct site_stats *sites;
	struct calib_provenance provenance;
};

/* Runs tokens[0..n) through the model in windows of ctx and returns the statistics,
 * or NULL with err set. Provenance gets the model, token counts and options; the
 * caller adds the texts (calib_result_add_text). Between windows it checks
 * atomic_interrupted() and stops with an error, so a caller that deferred signals
 * stops cleanly on Ctrl-C. Caller frees with calib_result_free(). */
struct calib_result *calib_run(const struct model *model, const int32_t *tokens, size_t n,
			       int ctx, const struct calib_options *options,
			       struct progress *progress, struct error *err);
void calib_result_free(struct calib_result *result);

/* Records a text file's name, size and hash in the provenance; reads the file. */
int calib_result_add_text(struct calib_result *result, const char *path, struct error *err);

/* Writes the "blk.B.KIND" name of a site, used in messages and tables, into buffer. */
const char *calib_site_label(char *buffer, size_t size, int block, enum site_kind kind);

/* Frees the arrays of a site_stats, not the struct itself. */
void calib_site_stats_clear(struct site_stats *stats);

#endif
