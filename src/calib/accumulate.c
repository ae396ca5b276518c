/* Per-site running sums: second moment by SYRK, channel mean and absmax, the per-token
 * concentration terms and the reservoir sample. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "calib_impl.h"

void
calib_syrk_add(double *sum, const double *x, int n, int dim)
{
	if (n > 0)
		linalg_dsyrk_t(dim, n, 1.0, x, dim, 1.0, sum, dim);
}

/* A uniform integer in [0, bound) by Lemire's multiply-shift; its bias is below
 * bound / 2^64, far too small to matter for token counts. */
static uint64_t
calib_rng_below(uint64_t *state, uint64_t bound)
{
	return (uint64_t)(((unsigned __int128)linalg_rng_next(state) * bound) >> 64);
}

void
calib_accumulator_init(struct calib_accumulator *acc, int dim, int sample_capacity, uint64_t seed)
{
	memset(acc, 0, sizeof(*acc));
	acc->dim = dim;
	acc->sum_xx = alloc_aligned((size_t)dim * dim, sizeof(double));
	memset(acc->sum_xx, 0, (size_t)dim * dim * sizeof(double));
	acc->sum_x = alloc_zeroed((size_t)dim, sizeof(double));
	acc->absmax = alloc_zeroed((size_t)dim, sizeof(float));
	acc->sample_capacity = sample_capacity;
	if (sample_capacity > 0)
		acc->sample = alloc_array((size_t)sample_capacity * dim, sizeof(float));
	acc->rng = seed;
}

void
calib_accumulator_fini(struct calib_accumulator *acc)
{
	free(acc->sum_xx);
	free(acc->sum_x);
	free(acc->absmax);
	free(acc->sample);
	memset(acc, 0, sizeof(*acc));
}

static int
calib_row_is_finite(const float *row, int dim)
{
	for (int i = 0; i < dim; i++) {
		if (!isfinite(row[i]))
			return 0;
	}
	return 1;
}

/* Algorithm R (Vitter 1985): the t-th token (from 0) replaces a random row with
 * probability capacity / (t + 1), so every token is kept with equal probability. */
static void
calib_reservoir_offer(struct calib_accumulator *acc, const float *row)
{
	uint64_t seen = acc->n_tokens; /* tokens before this one */
	uint64_t slot;

	if (acc->sample_capacity == 0)
		return;
	if (seen < (uint64_t)acc->sample_capacity) {
		slot = seen;
		acc->n_sample++;
	} else {
		slot = calib_rng_below(&acc->rng, seen + 1);
		if (slot >= (uint64_t)acc->sample_capacity)
			return;
	}
	memcpy(acc->sample + slot * acc->dim, row, (size_t)acc->dim * sizeof(float));
}

void
calib_accumulator_add(struct calib_accumulator *acc, const float *x, int n, double *scratch)
{
	int dim = acc->dim;
	int kept = 0;

	for (int t = 0; t < n; t++) {
		const float *row = x + (size_t)t * dim;
		double *out = scratch + (size_t)kept * dim;
		double sq_norm = 0.0;
		float lo = row[0], hi = row[0], amax = 0.0f;

		if (!calib_row_is_finite(row, dim)) {
			acc->nonfinite++;
			continue;
		}
		for (int i = 0; i < dim; i++) {
			float v = row[i];
			float a = fabsf(v);

			out[i] = v;
			sq_norm += (double)v * v;
			acc->sum_x[i] += v;
			acc->absmax[i] = a > acc->absmax[i] ? a : acc->absmax[i];
			amax = a > amax ? a : amax;
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
		}
		acc->sum_sq_norm += sq_norm;
		acc->sum_sq_range_sym += 4.0 * (double)amax * amax;
		acc->sum_sq_range_asym += ((double)hi - lo) * ((double)hi - lo);
		calib_reservoir_offer(acc, row);
		acc->n_tokens++;
		kept++;
	}
	calib_syrk_add(acc->sum_xx, scratch, kept, dim);
}

void
calib_accumulator_finish(struct calib_accumulator *acc, struct site_stats *stats)
{
	int dim = acc->dim;
	double inv = acc->n_tokens > 0 ? 1.0 / (double)acc->n_tokens : 0.0;

	memset(stats, 0, sizeof(*stats));
	stats->dim = dim;
	stats->n_tokens = acc->n_tokens;
	stats->nonfinite = acc->nonfinite;
	for (int i = 0; i < dim; i++) {
		for (int j = i; j < dim; j++) {
			double v = acc->sum_xx[(size_t)i * dim + j] * inv;

			acc->sum_xx[(size_t)i * dim + j] = v;
			acc->sum_xx[(size_t)j * dim + i] = v;
		}
		acc->sum_x[i] *= inv;
	}
	stats->second_moment = acc->sum_xx;
	stats->mean = acc->sum_x;
	stats->absmax = acc->absmax;
	stats->mean_sq_norm = acc->sum_sq_norm * inv;
	stats->mean_sq_range_sym = acc->sum_sq_range_sym * inv;
	stats->mean_sq_range_asym = acc->sum_sq_range_asym * inv;
	stats->n_sample = acc->n_sample;
	stats->sample = acc->sample;
	if (acc->n_sample == 0) {
		free(acc->sample);
		stats->sample = NULL;
	}
	acc->sum_xx = NULL;
	acc->sum_x = NULL;
	acc->absmax = NULL;
	acc->sample = NULL;
	calib_accumulator_fini(acc);
}
