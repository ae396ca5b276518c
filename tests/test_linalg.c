/* Tests of the linalg part: Hadamard transforms against dense references, matrix
 * functions against their defining identities, dtype conversion against known bits. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"

/* Sylvester Hadamard entry: (-1)^popcount(i & j), an independent definition. */
static float
sylvester(int i, int j)
{
	return __builtin_popcount((unsigned)(i & j)) % 2 ? -1.0f : 1.0f;
}

static void
fwht_matches_sylvester(void **state)
{
	int n = 64;
	float x[64], y[64];
	uint64_t rng = 7;

	for (int i = 0; i < n; i++)
		x[i] = (float)linalg_rng_normal(&rng);
	memcpy(y, x, sizeof(x));
	linalg_fwht(y, n);
	for (int i = 0; i < n; i++) {
		double ref = 0;

		for (int j = 0; j < n; j++)
			ref += sylvester(i, j) * x[j];
		assert_true(fabs(ref / 8.0 - y[i]) < 1e-5);
	}
}

/* max |H H^T - I| for the dense matrix of a width. */
static double
orthogonality_error(int width)
{
	float *h = alloc_array((size_t)width * width, sizeof(*h));
	double worst = 0;

	linalg_hadamard_matrix(width, h);
	for (int i = 0; i < width; i++)
		for (int j = 0; j < width; j++) {
			double dot = 0;

			for (int l = 0; l < width; l++)
				dot += (double)h[(int64_t)i * width + l] * h[(int64_t)j * width + l];
			dot -= i == j;
			if (fabs(dot) > worst)
				worst = fabs(dot);
		}
	free(h);
	return worst;
}

static void
hadamard_orthogonal_small_widths(void **state)
{
	int widths[] = { 1, 2, 12, 64, 96, 172, 3 * 128 };

	for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++)
		assert_true(orthogonality_error(widths[i]) < 1e-5);
}

static void
hadamard_pow2_is_sylvester(void **state)
{
	float h[16 * 16];

	linalg_hadamard_matrix(16, h);
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j++)
			assert_true(fabsf(h[i * 16 + j] - sylvester(i, j) / 4.0f) < 1e-6f);
}

/* For large widths: norms are kept and the transpose undoes the transform. */
static void
hadamard_large_widths_round_trip(void **state)
{
	int widths[] = { 5632, 8960, 11008, 14336 };
	uint64_t rng = 11;

	for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
		int d = widths[w];
		float *x = alloc_array(2 * (size_t)d, sizeof(*x));
		float *y = alloc_array(2 * (size_t)d, sizeof(*y));
		double nx = 0, ny = 0, diff = 0;

		for (int i = 0; i < 2 * d; i++)
			x[i] = (float)linalg_rng_normal(&rng);
		memcpy(y, x, sizeof(*x) * 2 * d);
		linalg_hadamard_rows(y, 2, d, d, false);
		for (int i = 0; i < 2 * d; i++) {
			nx += (double)x[i] * x[i];
			ny += (double)y[i] * y[i];
		}
		assert_true(fabs(nx - ny) / nx < 1e-5);
		linalg_hadamard_rows(y, 2, d, d, true);
		for (int i = 0; i < 2 * d; i++)
			diff += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
		assert_true(sqrt(diff / nx) < 1e-5);
		free(x);
		free(y);
	}
}

/* linalg_hadamard_blocks against H of each block (linalg_hadamard_matrix) applied by
 * double loops: blocks with a narrower tail, odd factors, padded rows, more rows than
 * one batch, in place and out of place. */
static void
hadamard_blocks_match_matrices(void **state)
{
	static const struct {
		int rows, ld, width, block;
	} cases[] = {
		{ 70, 172, 172, 44 }, { 9, 101, 96, 32 }, { 300, 300, 300, 300 },
		{ 260, 256, 256, 256 }, { 33, 200, 192, 48 }, { 300, 96, 96, 20 },
	};
	uint64_t rng = 21;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int rows = cases[c].rows, ld = cases[c].ld, width = cases[c].width;
		int block = cases[c].block;
		size_t size = (size_t)rows * ld;
		float *x = alloc_array(size, sizeof(*x));
		float *out = alloc_array(size, sizeof(*out));
		float *in_place = alloc_array(size, sizeof(*in_place));
		float *h = alloc_array((size_t)block * block, sizeof(*h));

		for (size_t i = 0; i < size; i++)
			x[i] = (float)linalg_rng_normal(&rng);
		for (size_t i = 0; i < size; i++)
			out[i] = -7.0f;
		memcpy(in_place, x, sizeof(*x) * size);
		linalg_hadamard_blocks(x, out, rows, ld, width, block, false);
		linalg_hadamard_blocks(in_place, in_place, rows, ld, width, block, false);
		for (int start = 0; start < width; start += block) {
			int s = start + block <= width ? block : width - start;

			linalg_hadamard_matrix(s, h);
			for (int64_t r = 0; r < rows; r++)
				for (int i = 0; i < s; i++) {
					double want = 0;

					for (int j = 0; j < s; j++)
						want += (double)h[i * s + j] * x[r * ld + start + j];
					if (fabs(out[r * ld + start + i] - want) > 1e-5 ||
					    fabs(in_place[r * ld + start + i] - want) > 1e-5)
						fail_msg("width %d block %d: row %d element %d: %g and %g, "
							 "expected %g", width, block, (int)r, start + i,
							 out[r * ld + start + i],
							 in_place[r * ld + start + i], want);
				}
		}
		/* Padding beyond the width is left alone. */
		for (int64_t r = 0; r < rows; r++)
			for (int i = width; i < ld; i++) {
				assert_true(out[r * ld + i] == -7.0f);
				assert_true(in_place[r * ld + i] == x[r * ld + i]);
			}
		free(x);
		free(out);
		free(in_place);
		free(h);
	}
}

static void
pow2_factor_of_model_widths(void **state)
{
	assert_int_equal(linalg_pow2_factor(172), 4);
	assert_int_equal(linalg_pow2_factor(5632), 512);
	assert_int_equal(linalg_pow2_factor(14336), 2048);
	assert_true(linalg_is_pow2(4096));
	assert_false(linalg_is_pow2(172));
}

static void
f16_known_values(void **state)
{
	assert_true(linalg_f16_to_f32(0x3c00) == 1.0f);
	assert_true(linalg_f16_to_f32(0xc000) == -2.0f);
	assert_true(linalg_f16_to_f32(0x7bff) == 65504.0f);
	assert_true(linalg_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
	assert_true(isinf(linalg_f16_to_f32(0x7c00)));
	assert_true(isnan(linalg_f16_to_f32(0x7e00)));
	assert_int_equal(linalg_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(linalg_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(linalg_f32_to_f16(1e6f), 0x7c00);
	assert_int_equal(linalg_f32_to_f16(5.9604644775390625e-08f), 0x0001);
	/* 1 + 2^-11 lies halfway between 1 and 1 + 2^-10; ties go to even. */
	assert_int_equal(linalg_f32_to_f16(1.0f + 0x1.0p-11f), 0x3c00);
	assert_int_equal(linalg_f32_to_f16(1.0f + 0x1.8p-10f), 0x3c02);
}

static void
f16_round_trip_all_finite(void **state)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00)
			continue;
		assert_int_equal(linalg_f32_to_f16(linalg_f16_to_f32((uint16_t)h)), h);
	}
}

static void
bf16_known_values(void **state)
{
	assert_true(linalg_bf16_to_f32(0x3f80) == 1.0f);
	assert_int_equal(linalg_f32_to_bf16(1.0f), 0x3f80);
	assert_int_equal(linalg_f32_to_bf16(-2.5f), 0xc020);
	/* 1 + 2^-8 is halfway between bfloat16 neighbours 1 and 1 + 2^-7: even wins. */
	assert_int_equal(linalg_f32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);
	assert_true(isnan(linalg_bf16_to_f32(linalg_f32_to_bf16(NAN))));
}

static void
random_spd(int n, uint64_t seed, double *a)
{
	double *g = alloc_array((size_t)n * n, sizeof(*g));
	uint64_t rng = seed;

	for (int i = 0; i < n * n; i++)
		g[i] = linalg_rng_normal(&rng);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = (i == j) ? 0.1 : 0;

			for (int l = 0; l < n; l++)
				s += g[i * n + l] * g[j * n + l];
			a[i * n + j] = s;
		}
	free(g);
}

static void
sym_power_square_root_squares_back(void **state)
{
	int n = 9;
	double a[81], r[81];

	random_spd(n, 3, a);
	assert_int_equal(linalg_sym_power(n, a, 0, 0.5, r, NULL), 0);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;

			for (int l = 0; l < n; l++)
				s += r[i * n + l] * r[l * n + j];
			assert_true(fabs(s - a[i * n + j]) < 1e-9 * (1 + fabs(a[i * n + j])));
		}
}

static void
sym_power_singular_inverse_fails(void **state)
{
	double a[4] = { 1, 1, 1, 1 }, r[4];
	struct error err;

	assert_int_equal(linalg_sym_power(2, a, 0, -0.5, r, &err), -1);
	assert_int_equal(linalg_sym_power(2, a, 1e-3, -0.5, r, &err), 0);
}

/* G = (sqrt_g)^2 must satisfy G A G = B. */
static void
geometric_mean_solves_riccati(void **state)
{
	int n = 7;
	double a[49], b[49], s[49], si[49], g[49], ga[49], trace_root;

	random_spd(n, 5, a);
	random_spd(n, 6, b);
	assert_int_equal(linalg_geometric_mean(n, a, b, s, si, &trace_root, NULL), 0);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double sum = 0, id = 0;

			for (int l = 0; l < n; l++) {
				sum += s[i * n + l] * s[l * n + j];
				id += s[i * n + l] * si[l * n + j];
			}
			g[i * n + j] = sum;
			assert_true(fabs(id - (i == j)) < 1e-9);
		}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double sum = 0;

			for (int l = 0; l < n; l++)
				sum += g[i * n + l] * a[l * n + j];
			ga[i * n + j] = sum;
		}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double sum = 0;

			for (int l = 0; l < n; l++)
				sum += ga[i * n + l] * g[l * n + j];
			assert_true(fabs(sum - b[i * n + j]) < 1e-8 * (1 + fabs(b[i * n + j])));
		}
	/* tr(G A) = tr (A^{1/2} B A^{1/2})^{1/2} at the optimum. */
	{
		double tr = 0;

		for (int i = 0; i < n; i++)
			tr += ga[i * n + i];
		assert_true(fabs(tr - trace_root) < 1e-8 * tr);
	}
}

static void
random_orthogonal_is_orthogonal_and_seeded(void **state)
{
	int n = 33;
	double *q = alloc_array(n * n, sizeof(*q));
	double *q2 = alloc_array(n * n, sizeof(*q2));
	double *q3 = alloc_array(n * n, sizeof(*q3));

	assert_int_equal(linalg_random_orthogonal(n, 42, q, NULL), 0);
	assert_int_equal(linalg_random_orthogonal(n, 42, q2, NULL), 0);
	assert_int_equal(linalg_random_orthogonal(n, 43, q3, NULL), 0);
	assert_memory_equal(q, q2, sizeof(*q) * n * n);
	assert_memory_not_equal(q, q3, sizeof(*q) * n * n);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;

			for (int l = 0; l < n; l++)
				s += q[l * n + i] * q[l * n + j];
			assert_true(fabs(s - (i == j)) < 1e-12);
		}
	free(q);
	free(q2);
	free(q3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fwht_matches_sylvester),
		cmocka_unit_test(hadamard_orthogonal_small_widths),
		cmocka_unit_test(hadamard_pow2_is_sylvester),
		cmocka_unit_test(hadamard_large_widths_round_trip),
		cmocka_unit_test(hadamard_blocks_match_matrices),
		cmocka_unit_test(pow2_factor_of_model_widths),
		cmocka_unit_test(f16_known_values),
		cmocka_unit_test(f16_round_trip_all_finite),
		cmocka_unit_test(bf16_known_values),
		cmocka_unit_test(sym_power_square_root_squares_back),
		cmocka_unit_test(sym_power_singular_inverse_fails),
		cmocka_unit_test(geometric_mean_solves_riccati),
		cmocka_unit_test(random_orthogonal_is_orthogonal_and_seeded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
