/* Internal to the calib part: the running sums of one site and the BLAS step. */
#ifndef CATSCOPE_CALIB_IMPL_H
#define CATSCOPE_CALIB_IMPL_H

#include <stdint.h>

#include "catscope/sitestats.h"

/* Running sums of one site; turned into a site_stats by calib_accumulator_finish. */
struct calib_accumulator {
	int dim;
	uint64_t n_tokens;       /* finite tokens added */
	uint64_t nonfinite;
	double *sum_xx;          /* dim x dim, row-major; only the upper triangle is kept */
	double *sum_x;           /* dim */
	float *absmax;           /* dim */
	double sum_sq_norm;
	double sum_sq_range_sym;
	double sum_sq_range_asym;
	int sample_capacity;
	int n_sample;
	float *sample;           /* sample_capacity x dim */
	uint64_t rng;            /* splitmix64 state of the reservoir */
};

void calib_accumulator_init(struct calib_accumulator *acc, int dim, int sample_capacity,
			    uint64_t seed);
void calib_accumulator_fini(struct calib_accumulator *acc);

/* Adds the finite rows of the n x dim batch x. scratch must have room for n x dim doubles. */
void calib_accumulator_add(struct calib_accumulator *acc, const float *x, int n,
			   double *scratch);

/* Moves the sums into stats as expectations (sums / n_tokens), mirroring the upper
 * triangle of E[x x^T]; acc is left empty. */
void calib_accumulator_finish(struct calib_accumulator *acc, struct site_stats *stats);

/* Adds x^T x of the n x dim row-major matrix x to the upper triangle of sum. */
void calib_syrk_add(double *sum, const double *x, int n, int dim);

#endif
