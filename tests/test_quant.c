/* Tests of the quant part: grids against an exhaustive nearest-level search, codes and
 * packing against plain references, GPTQ and clip search against RTN. */
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
#include "catscope/quant.h"

static void
fill_normal(float *x, int64_t n, uint64_t seed)
{
	uint64_t rng = seed;

	for (int64_t i = 0; i < n; i++)
		x[i] = (float)linalg_rng_normal(&rng);
}

/* Nearest level by scanning every level; levels are (u - z) * step, u = 0..2^b-1. */
static float
nearest_level(float v, int bits, float step, int zero)
{
	float best = 0, best_dist = INFINITY;

	for (int u = 0; u < (1 << bits); u++) {
		float level = (float)(u - zero) * step;
		float dist = fabsf(level - v);

		if (dist < best_dist) {
			best_dist = dist;
			best = level;
		}
	}
	return best;
}

/* The grid stated in quant.h, computed from scratch for one group. */
static void
reference_grid(const float *v, int n, int bits, enum quant_mode mode, float clip, float *step,
	       int *zero)
{
	int levels = (1 << bits) - 1;
	float lo = v[0], hi = v[0], amax = 0;

	for (int i = 0; i < n; i++) {
		lo = fminf(lo, v[i]);
		hi = fmaxf(hi, v[i]);
		amax = fmaxf(amax, fabsf(v[i]));
	}
	if (mode == QUANT_SYMMETRIC) {
		*step = 2 * clip * amax / levels;
		*zero = 1 << (bits - 1);
	} else {
		float mid = (lo + hi) / 2, half = clip * (hi - lo) / 2;

		*step = 2 * half / levels;
		*zero = (int)lrintf(-(mid - half) / *step);
	}
}

static void
grid_matches_nearest_level(void **state)
{
	int rows = 5, cols = 48;
	float *x = alloc_array(rows * cols, sizeof(*x));
	float *q = alloc_array(rows * cols, sizeof(*q));
	int groups[] = { 0, 16, 20 };

	fill_normal(x, rows * cols, 1);
	for (int bits = 2; bits <= 8; bits++)
		for (int mode = 0; mode < 2; mode++)
			for (int gi = 0; gi < 3; gi++) {
				struct quant_params p = { .bits = bits, .mode = mode,
							  .group_size = groups[gi], .clip = 0.9f };
				int g = groups[gi] ? groups[gi] : cols;

				memcpy(q, x, sizeof(*x) * rows * cols);
				quant_fake_rows(q, rows, cols, cols, &p, NULL);
				for (int r = 0; r < rows; r++)
					for (int s = 0; s < cols; s += g) {
						int n = s + g <= cols ? g : cols - s;
						float step;
						int zero;

						reference_grid(x + r * cols + s, n, bits, mode, 0.9f, &step,
							       &zero);
						for (int i = s; i < s + n; i++) {
							float ref = nearest_level(x[r * cols + i], bits, step,
										  zero);

							assert_true(fabsf(ref - q[r * cols + i]) <= 1e-6f * (1 + fabsf(ref)));
						}
					}
			}
	free(x);
	free(q);
}

static void
symmetric_error_within_half_step(void **state)
{
	float x[256], q[256];
	struct quant_params p = { .bits = 4, .mode = QUANT_SYMMETRIC, .clip = 1 };
	float amax = 0;

	fill_normal(x, 256, 2);
	for (int i = 0; i < 256; i++)
		amax = fmaxf(amax, fabsf(x[i]));
	memcpy(q, x, sizeof(x));
	quant_fake_rows(q, 1, 256, 256, &p, NULL);
	for (int i = 0; i < 256; i++)
		assert_true(fabsf(q[i] - x[i]) <= 0.5f * (2 * amax / 15) * 1.0001f);
}

static void
constant_groups_are_exact(void **state)
{
	float zeros[8] = { 0 }, consts[8];
	struct quant_params sym = { .bits = 4, .mode = QUANT_SYMMETRIC, .clip = 1 };
	struct quant_params asym = { .bits = 4, .mode = QUANT_ASYMMETRIC, .clip = 1 };

	for (int i = 0; i < 8; i++)
		consts[i] = 3.25f;
	quant_fake_rows(zeros, 1, 8, 8, &sym, NULL);
	quant_fake_rows(consts, 1, 8, 8, &asym, NULL);
	for (int i = 0; i < 8; i++) {
		assert_true(zeros[i] == 0.0f);
		assert_true(consts[i] == 3.25f);
	}
}

static void
codes_dequantize_to_fake_quant(void **state)
{
	int rows = 4, cols = 64;
	float w[256], fake[256], deq[256], scales[16];
	uint8_t codes[256];
	int32_t zeros[16];

	fill_normal(w, 256, 3);
	for (int mode = 0; mode < 2; mode++) {
		struct quant_params p = { .bits = 4, .mode = mode, .group_size = 16, .clip = 1 };

		memcpy(fake, w, sizeof(w));
		quant_fake_rows(fake, rows, cols, cols, &p, NULL);
		quant_codes(w, rows, cols, &p, NULL, codes, scales, zeros);
		quant_dequantize(codes, rows, cols, &p, scales, zeros, deq);
		for (int i = 0; i < 256; i++) {
			assert_true(codes[i] <= 15);
			assert_true(deq[i] == fake[i]);
		}
		if (mode == QUANT_SYMMETRIC)
			for (int g = 0; g < 16; g++)
				assert_int_equal(zeros[g], 8);
	}
}

static void
pack_matches_plain_reference(void **state)
{
	uint8_t codes[21], back[21];
	int32_t packed[4];
	uint64_t rng = 5;

	for (int i = 0; i < 21; i++)
		codes[i] = (uint8_t)(linalg_rng_next(&rng) % 16);
	assert_int_equal(quant_pack(codes, 21, 4, packed, NULL), 3);
	for (int w = 0; w < 3; w++) {
		uint64_t ref = 0, mult = 1;

		for (int j = 0; j < 8; j++) {
			int i = w * 8 + j;

			ref += (i < 21 ? codes[i] : 0) * mult;
			mult *= 16;
		}
		assert_int_equal((uint32_t)packed[w], (uint32_t)ref);
	}
	assert_int_equal(quant_unpack(packed, 21, 4, back, NULL), 0);
	assert_memory_equal(codes, back, 21);
	/* First element in the lowest nibble. */
	{
		uint8_t two[2] = { 0x3, 0xa };
		int32_t word;

		quant_pack(two, 2, 4, &word, NULL);
		assert_int_equal(word, 0xa3);
	}
	assert_int_equal(quant_pack(codes, 21, 3, packed, NULL), -1);
}

static void
pack_round_trip_two_and_eight_bits(void **state)
{
	uint8_t codes[37], back[37];
	int32_t packed[40];
	uint64_t rng = 6;
	int widths[] = { 2, 8 };

	for (int b = 0; b < 2; b++) {
		for (int i = 0; i < 37; i++)
			codes[i] = (uint8_t)(linalg_rng_next(&rng) % (1u << widths[b]));
		quant_pack(codes, 37, widths[b], packed, NULL);
		quant_unpack(packed, 37, widths[b], back, NULL);
		assert_memory_equal(codes, back, 37);
	}
}

static void
params_parse_and_format(void **state)
{
	struct quant_params p;
	char buf[64];
	struct error err;

	assert_int_equal(quant_params_parse("4:asym:g128:clip=0.9", &p, &err), 0);
	assert_int_equal(p.bits, 4);
	assert_int_equal(p.mode, QUANT_ASYMMETRIC);
	assert_int_equal(p.group_size, 128);
	assert_true(fabsf(p.clip - 0.9f) < 1e-6f);
	quant_params_format(&p, buf, sizeof(buf));
	assert_string_equal(buf, "4:asym:g128:clip=0.9");
	assert_int_equal(quant_params_parse("none", &p, &err), 0);
	assert_int_equal(p.bits, 0);
	assert_int_equal(quant_params_parse("9", &p, &err), -1);
	assert_int_equal(quant_params_parse("4:clip=1.5", &p, &err), -1);
	assert_int_equal(quant_params_parse("4:foo", &p, &err), -1);
}

static void
config_parse_and_format(void **state)
{
	struct quant_config qc;
	struct error err;
	char buf[128];

	assert_int_equal(quant_config_parse("w4a8", &qc, &err), 0);
	assert_int_equal(qc.weight.bits, 4);
	assert_int_equal(qc.act.bits, 8);
	assert_int_equal(qc.rounding, QUANT_RTN);
	assert_int_equal(quant_config_parse("w3:g128,a8:asym,gptq,clip-search,damp=0.05", &qc,
					    &err), 0);
	assert_int_equal(qc.weight.bits, 3);
	assert_int_equal(qc.weight.group_size, 128);
	assert_int_equal(qc.act.mode, QUANT_ASYMMETRIC);
	assert_int_equal(qc.rounding, QUANT_GPTQ);
	assert_true(qc.clip_search);
	assert_true(fabs(qc.gptq_damp - 0.05) < 1e-12);
	quant_config_format(&qc, buf, sizeof(buf));
	assert_string_equal(buf, "w3:g128,a8:asym,gptq,clip-search,damp=0.05");
	assert_int_equal(quant_config_parse("anone,w8", &qc, &err), 0);
	assert_int_equal(qc.act.bits, 0);
	quant_config_format(&qc, buf, sizeof(buf));
	assert_string_equal(buf, "w8,anone,rtn");
	assert_int_equal(quant_config_parse("w9a4", &qc, &err), -1);
	assert_int_equal(quant_config_parse("w4,fast", &qc, &err), -1);
	assert_non_null(strstr(err.message, "fast"));
	assert_int_equal(quant_config_parse("damp=-1", &qc, &err), -1);
}

static void
params_parse_rejects_repeats(void **state)
{
	struct quant_params p;
	struct error err;

	assert_int_equal(quant_params_parse("4:g2:g3", &p, &err), -1);
	assert_non_null(strstr(err.message, "group size twice (g2 and g3)"));
	assert_int_equal(quant_params_parse("4:sym:asym", &p, &err), -1);
	assert_non_null(strstr(err.message, "mode twice (sym and asym)"));
	assert_int_equal(quant_params_parse("4:clip=0.5:clip=0.5", &p, &err), -1);
	assert_non_null(strstr(err.message, "clip ratio twice"));
	assert_int_equal(quant_params_parse("4:g99999999999", &p, &err), -1);
	assert_int_equal(quant_params_parse("99999999999", &p, &err), -1);
}

static void
config_parse_rejects_repeats(void **state)
{
	struct quant_config qc;
	struct error err;

	assert_int_equal(quant_config_parse("w4,w4", &qc, &err), -1);
	assert_non_null(strstr(err.message, "weight quantizer twice (w4 and w4)"));
	assert_int_equal(quant_config_parse("a8,w4,a4", &qc, &err), -1);
	assert_non_null(strstr(err.message, "activation quantizer twice (a8 and a4)"));
	assert_int_equal(quant_config_parse("w4,rtn,gptq", &qc, &err), -1);
	assert_non_null(strstr(err.message, "rounding twice (rtn and gptq)"));
	assert_int_equal(quant_config_parse("clip-search,clip-search", &qc, &err), -1);
	assert_int_equal(quant_config_parse("gptq,damp=0.1,damp=0.2", &qc, &err), -1);
	assert_non_null(strstr(err.message, "dampening twice (damp=0.1 and damp=0.2)"));
}

static void
config_parse_checks_damp_range(void **state)
{
	static const char *const rejected[] = {
		"gptq,damp=inf", "gptq,damp=-inf", "gptq,damp=nan", "gptq,damp=0",
		"gptq,damp=1.5", "gptq,damp=1e308", "gptq,damp=", "gptq,damp=0.1x",
	};
	struct quant_config qc;
	struct error err;

	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
		assert_int_equal(quant_config_parse(rejected[i], &qc, &err), -1);
		assert_non_null(strstr(err.message, "(0, 1]"));
	}
	assert_int_equal(quant_config_parse("gptq,damp=1", &qc, &err), 0);
	assert_true(qc.gptq_damp == 1.0);
	assert_int_equal(quant_config_parse("gptq,damp=1e-6", &qc, &err), 0);
	assert_true(qc.gptq_damp == 1e-6);
}

/* SQNR of per-row symmetric RTN on Gaussian rows, in dB. */
static double
rtn_sqnr_db(const float *x, int rows, int cols, int bits)
{
	float *q = alloc_array(rows * cols, sizeof(*q));
	struct quant_params p = { .bits = bits, .mode = QUANT_SYMMETRIC, .clip = 1 };
	double sig = 0, noise = 0;

	memcpy(q, x, sizeof(*q) * rows * cols);
	quant_fake_rows(q, rows, cols, cols, &p, NULL);
	for (int i = 0; i < rows * cols; i++) {
		sig += (double)x[i] * x[i];
		noise += ((double)x[i] - q[i]) * ((double)x[i] - q[i]);
	}
	free(q);
	return 10 * log10(sig / noise);
}

static void
six_db_per_bit(void **state)
{
	int rows = 64, cols = 1024;
	float *x = alloc_array(rows * cols, sizeof(*x));

	fill_normal(x, rows * cols, 4);
	for (int bits = 6; bits < 8; bits++) {
		double gain = rtn_sqnr_db(x, rows, cols, bits + 1) - rtn_sqnr_db(x, rows, cols, bits);

		assert_true(fabs(gain - 6.02) < 0.15);
	}
	free(x);
}

/* tr(dW S dW^T) with S = X^T X / n, computed as sum over tokens of ||dW x||^2 / n. */
static double
output_error(const float *w, const float *q, const float *x, int rows, int cols, int n)
{
	double total = 0;

	for (int t = 0; t < n; t++)
		for (int r = 0; r < rows; r++) {
			double y = 0;

			for (int i = 0; i < cols; i++)
				y += ((double)w[r * cols + i] - q[r * cols + i]) * x[t * cols + i];
			total += y * y;
		}
	return total / n;
}

/* Correlated inputs: x = z A with a random mixing A, so that H is far from diagonal. */
static void
correlated_problem(int rows, int cols, int n, float *w, float *x, double *h)
{
	float *z = alloc_array(n * cols, sizeof(*z));
	float *a = alloc_array(cols * cols, sizeof(*a));

	fill_normal(w, rows * cols, 10);
	fill_normal(z, n * cols, 11);
	fill_normal(a, cols * cols, 12);
	for (int t = 0; t < n; t++)
		for (int j = 0; j < cols; j++) {
			double s = 0;

			for (int i = 0; i < cols; i++)
				s += z[t * cols + i] * a[i * cols + j];
			x[t * cols + j] = (float)s;
		}
	for (int i = 0; i < cols; i++)
		for (int j = 0; j < cols; j++) {
			double s = 0;

			for (int t = 0; t < n; t++)
				s += (double)x[t * cols + i] * x[t * cols + j];
			h[i * cols + j] = s / n;
		}
	free(z);
	free(a);
}

static void
gptq_beats_rtn_on_output_error(void **state)
{
	int rows = 32, cols = 96, n = 512;
	float *w = alloc_array(rows * cols, sizeof(*w));
	float *x = alloc_array(n * cols, sizeof(*x));
	float *rtn = alloc_array(rows * cols, sizeof(*rtn));
	float *gptq = alloc_array(rows * cols, sizeof(*gptq));
	double *h = alloc_array(cols * cols, sizeof(*h));
	int groups[] = { 0, 32 };

	correlated_problem(rows, cols, n, w, x, h);
	for (int g = 0; g < 2; g++) {
		struct quant_params p = { .bits = 3, .mode = QUANT_SYMMETRIC, .group_size = groups[g],
					  .clip = 1 };
		unsigned flags = 0;
		double e_rtn, e_gptq;

		memcpy(rtn, w, sizeof(*w) * rows * cols);
		memcpy(gptq, w, sizeof(*w) * rows * cols);
		quant_fake_rows(rtn, rows, cols, cols, &p, NULL);
		assert_int_equal(quant_gptq(gptq, rows, cols, h, &p, NULL, 0.01, &flags, NULL), 0);
		e_rtn = output_error(w, rtn, x, rows, cols, n);
		e_gptq = output_error(w, gptq, x, rows, cols, n);
		assert_true(e_gptq < e_rtn);
		/* Per-row scales come from the original row: every output is a level of it. */
		if (groups[g] == 0)
			for (int r = 0; r < rows; r++) {
				float step;
				int zero;

				reference_grid(w + r * cols, cols, 3, QUANT_SYMMETRIC, 1, &step, &zero);
				for (int i = 0; i < cols; i++) {
					float level = gptq[r * cols + i] / step;

					assert_true(fabsf(level - rintf(level)) < 1e-4f);
					assert_true(level >= -4.0001f && level <= 3.0001f);
				}
			}
	}
	free(w);
	free(x);
	free(rtn);
	free(gptq);
	free(h);
}

static void
gptq_non_pd_hessian_is_damped(void **state)
{
	int rows = 4, cols = 8;
	float w[32];
	double h[64];
	struct quant_params p = { .bits = 4, .mode = QUANT_SYMMETRIC, .clip = 1 };
	unsigned flags = 0;

	fill_normal(w, 32, 13);
	/* Indefinite: diagonal 1, all off-diagonal entries 0.9, one zero column. */
	for (int i = 0; i < cols; i++)
		for (int j = 0; j < cols; j++)
			h[i * cols + j] = i == j ? 1.0 : -0.9;
	for (int i = 0; i < cols; i++)
		h[3 * cols + i] = h[i * cols + 3] = 0;
	assert_int_equal(quant_gptq(w, rows, cols, h, &p, NULL, 0.01, &flags, NULL), 0);
	assert_true(flags & QUANT_FLAG_HESSIAN_DAMPED);
	assert_true(flags & QUANT_FLAG_DEAD_INPUTS);
	for (int i = 0; i < 32; i++)
		assert_true(isfinite(w[i]));
	h[5] = NAN;
	assert_int_equal(quant_gptq(w, rows, cols, h, &p, NULL, 0.01, &flags, NULL), -1);
}

static void
clip_search_matches_brute_force(void **state)
{
	int rows = 6, cols = 64, n = 256;
	float *w = alloc_array(rows * cols, sizeof(*w));
	float *x = alloc_array(n * cols, sizeof(*x));
	double *h = alloc_array(cols * cols, sizeof(*h));
	float *sigma = alloc_array(cols * cols, sizeof(*sigma));
	float clip[6], row[64];
	struct quant_params p = { .bits = 3, .mode = QUANT_SYMMETRIC, .clip = 1 };

	correlated_problem(rows, cols, n, w, x, h);
	for (int i = 0; i < cols * cols; i++)
		sigma[i] = (float)h[i];
	quant_clip_search(w, rows, cols, sigma, &p, clip);
	for (int r = 0; r < rows; r++) {
		double best = INFINITY;
		float best_ratio = 0;

		for (int c = 0; c <= 10; c++) {
			float ratio = 1.0f - 0.05f * c;
			double cost = 0;

			memcpy(row, w + r * cols, sizeof(row));
			quant_fake_rows(row, 1, cols, cols, &p, &ratio);
			for (int i = 0; i < cols; i++)
				for (int j = 0; j < cols; j++)
					cost += (w[r * cols + i] - row[i]) * h[i * cols + j] *
						(w[r * cols + j] - row[j]);
			if (cost < best * (1 - 1e-9)) {
				best = cost;
				best_ratio = ratio;
			}
		}
		assert_true(fabsf(clip[r] - best_ratio) < 1e-6f);
	}
	free(w);
	free(x);
	free(h);
	free(sigma);
}

/* The code as the grid defines it, with nearbyintf: round half to even of v / step,
 * plus the zero point when asymmetric, clamped to the code range (NaN to the lowest). */
static int
reference_code(float v, const struct quant_params *p, float step, int32_t zero)
{
	float q = nearbyintf(v / step);
	float lo = p->mode == QUANT_SYMMETRIC ? -(float)(1 << (p->bits - 1)) : 0;
	float hi = p->mode == QUANT_SYMMETRIC ? (float)((1 << (p->bits - 1)) - 1)
					      : (float)((1 << p->bits) - 1);

	if (p->mode != QUANT_SYMMETRIC)
		q += (float)zero;
	if (!(q >= lo))
		q = lo;
	if (q > hi)
		q = hi;
	return (int)(p->mode == QUANT_SYMMETRIC ? q + (float)zero : q);
}

/* quant_code rounds ties, out-of-range values, NaN, infinities and huge zero points as
 * nearbyintf and a clamp do. */
static void
code_matches_nearbyintf(void **state)
{
	static const float specials[] = { 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -7.5f, 7.5f, -8.5f,
					  1e30f, -1e30f, INFINITY, -INFINITY, NAN, 4194303.5f };
	static const int32_t zeros[] = { 0, 3, 8, 200, -5, 3000000, -3000000 };
	uint64_t rng = 5;

	for (int bits = 2; bits <= 8; bits++)
		for (int mode = 0; mode < 2; mode++)
			for (size_t z = 0; z < sizeof(zeros) / sizeof(zeros[0]); z++) {
				struct quant_params p = { .bits = bits, .clip = 1.0f,
							  .mode = mode ? QUANT_ASYMMETRIC
								       : QUANT_SYMMETRIC };
				int32_t zero = mode ? zeros[z] : 1 << (bits - 1);
				float step = 0.37f;

				for (int i = 0; i < 2000; i++) {
					float v = (float)linalg_rng_normal(&rng) * 300 * step;

					if (i % 3 == 0) /* an exact tie */
						v = (floorf(v / step) + 0.5f) * step;
					assert_int_equal(quant_code(v, &p, step, zero),
							 reference_code(v, &p, step, zero));
				}
				for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
					assert_int_equal(quant_code(specials[i], &p, 1.0f, zero),
							 reference_code(specials[i], &p, 1.0f, zero));
					assert_int_equal(quant_code(specials[i] - (float)zero, &p, 1.0f, zero),
							 reference_code(specials[i] - (float)zero, &p, 1.0f, zero));
				}
			}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(code_matches_nearbyintf),
		cmocka_unit_test(grid_matches_nearest_level),
		cmocka_unit_test(symmetric_error_within_half_step),
		cmocka_unit_test(constant_groups_are_exact),
		cmocka_unit_test(codes_dequantize_to_fake_quant),
		cmocka_unit_test(pack_matches_plain_reference),
		cmocka_unit_test(pack_round_trip_two_and_eight_bits),
		cmocka_unit_test(params_parse_and_format),
		cmocka_unit_test(config_parse_and_format),
		cmocka_unit_test(params_parse_rejects_repeats),
		cmocka_unit_test(config_parse_rejects_repeats),
		cmocka_unit_test(config_parse_checks_damp_range),
		cmocka_unit_test(six_db_per_bit),
		cmocka_unit_test(gptq_beats_rtn_on_output_error),
		cmocka_unit_test(gptq_non_pd_hessian_is_damped),
		cmocka_unit_test(clip_search_matches_brute_force),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
