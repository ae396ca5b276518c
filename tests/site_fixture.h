/* Synthetic sites for the engine tests: correlated activations with outlier channels,
 * weights with uneven column norms, and statistics computed by plain loops. */
#ifndef CATSCOPE_TESTS_SITE_FIXTURE_H
#define CATSCOPE_TESTS_SITE_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/sitestats.h"
#include "catscope/transform.h"

struct fixture {
	struct site_stats stats;
	struct site_layers layers;
	float *weights[SITE_LAYERS_MAX];
};

/* Fills the statistics from stats.sample by plain loops (double sums). */
static inline void
fixture_stats_from_sample(struct site_stats *s)
{
	int d = s->dim, n = s->n_sample;

	s->n_tokens = n;
	s->mean_sq_norm = s->mean_sq_range_sym = s->mean_sq_range_asym = 0;
	memset(s->second_moment, 0, sizeof(double) * d * d);
	memset(s->mean, 0, sizeof(double) * d);
	memset(s->absmax, 0, sizeof(float) * d);
	for (int t = 0; t < n; t++) {
		const float *x = s->sample + (int64_t)t * d;
		float lo = x[0], hi = x[0], amax = 0;

		for (int i = 0; i < d; i++) {
			s->mean[i] += x[i] / (double)n;
			s->mean_sq_norm += (double)x[i] * x[i] / n;
			if (fabsf(x[i]) > s->absmax[i])
				s->absmax[i] = fabsf(x[i]);
			lo = fminf(lo, x[i]);
			hi = fmaxf(hi, x[i]);
			amax = fmaxf(amax, fabsf(x[i]));
		}
		s->mean_sq_range_sym += 4.0 * amax * amax / n;
		s->mean_sq_range_asym += ((double)hi - lo) * ((double)hi - lo) / n;
	}
	/* X^T X through BLAS: this is the input to the tests, not what they check. */
	{
		double *xd = alloc_array((size_t)n * d, sizeof(*xd));

		for (int64_t i = 0; i < (int64_t)n * d; i++)
			xd[i] = s->sample[i];
		linalg_dsyrk_t(d, n, 1.0 / n, xd, d, 0.0, s->second_moment, d);
		free(xd);
	}
}

/* n tokens of width d: x = z + mixing of a few shared factors, channel scales with a
 * few outliers (outlier_scale; 1 gives isotropic Gaussian). Layers of rows[l] rows. */
static inline void
fixture_init(struct fixture *f, int d, int n, int n_layers, const int *rows,
	     float outlier_scale, uint64_t seed)
{
	uint64_t rng = seed;
	float f1[4];

	memset(f, 0, sizeof(*f));
	f->stats.dim = d;
	f->stats.n_sample = n;
	f->stats.second_moment = alloc_array((size_t)d * d, sizeof(double));
	f->stats.mean = alloc_array(d, sizeof(double));
	f->stats.absmax = alloc_array(d, sizeof(float));
	f->stats.sample = alloc_array((size_t)n * d, sizeof(float));
	for (int t = 0; t < n; t++) {
		for (int j = 0; j < 4; j++)
			f1[j] = outlier_scale > 1 ? (float)linalg_rng_normal(&rng) : 0;
		for (int i = 0; i < d; i++) {
			float v = (float)linalg_rng_normal(&rng) + 0.5f * f1[i % 4];

			if (outlier_scale > 1 && i % 37 == 5)
				v *= outlier_scale;
			f->stats.sample[(int64_t)t * d + i] = v;
		}
	}
	fixture_stats_from_sample(&f->stats);
	f->layers.count = n_layers;
	for (int l = 0; l < n_layers; l++) {
		float *w = alloc_array((size_t)rows[l] * d, sizeof(*w));

		for (int64_t r = 0; r < rows[l]; r++)
			for (int i = 0; i < d; i++)
				w[r * d + i] = (float)linalg_rng_normal(&rng) *
					       (outlier_scale > 1 ? 0.2f + (float)((i * 7) % 11) / 5 : 1);
		f->weights[l] = w;
		f->layers.layer[l] = (struct site_layer){ .name = "layer", .rows = rows[l],
							  .weight = w };
	}
}

static inline void
fixture_free(struct fixture *f)
{
	free(f->stats.second_moment);
	free(f->stats.mean);
	free(f->stats.absmax);
	free(f->stats.sample);
	for (int l = 0; l < f->layers.count; l++)
		free(f->weights[l]);
}

/* tr(Sw Sx) by plain loops: sum over layers and rows of w^T Sx w. */
static inline double
fixture_trace_sw_sx(const struct fixture *f)
{
	int d = f->stats.dim;
	double total = 0;

	for (int l = 0; l < f->layers.count; l++)
		for (int64_t r = 0; r < f->layers.layer[l].rows; r++) {
			const float *w = f->layers.layer[l].weight + r * d;

			for (int i = 0; i < d; i++) {
				double s = 0;

				for (int j = 0; j < d; j++)
					s += f->stats.second_moment[(int64_t)i * d + j] * w[j];
				total += w[i] * s;
			}
		}
	return total;
}

#endif
