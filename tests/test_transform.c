/* Tests of the transforms: function preservation for every kind and width,
 * orthogonality, the CAT k = 1 closed form, T S T^T against a dense product, and the
 * spec strings. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/transform.h"
#include "site_fixture.h"

/* max over layers of ||W T^{-1} T x - W x|| / ||W x||, over the sample, with the
 * products by plain double loops; T applied in place or out of place. */
static double
preservation_error(const struct fixture *f, const struct transform *t, bool out_of_place)
{
	int d = f->stats.dim, n = f->stats.n_sample;
	float *x = alloc_array((size_t)n * d, sizeof(*x));
	double worst = 0;

	if (out_of_place) {
		transform_apply_activations_to(t, f->stats.sample, x, n);
	} else {
		memcpy(x, f->stats.sample, sizeof(*x) * n * d);
		transform_apply_activations(t, x, n);
	}
	for (int l = 0; l < f->layers.count; l++) {
		int m = f->layers.layer[l].rows;
		const float *w = f->layers.layer[l].weight;
		float *wt = alloc_array((size_t)m * d, sizeof(*wt));
		double num = 0, den = 0;

		if (out_of_place) {
			transform_apply_weights_to(t, w, wt, m);
		} else {
			memcpy(wt, w, sizeof(*wt) * m * d);
			transform_apply_weights(t, wt, m);
		}
		for (int tok = 0; tok < n; tok++)
			for (int r = 0; r < m; r++) {
				double y = 0, yt = 0;

				for (int i = 0; i < d; i++) {
					y += (double)w[(int64_t)r * d + i] * f->stats.sample[(int64_t)tok * d + i];
					yt += (double)wt[(int64_t)r * d + i] * x[(int64_t)tok * d + i];
				}
				num += (y - yt) * (y - yt);
				den += y * y;
			}
		if (sqrt(num / den) > worst)
			worst = sqrt(num / den);
		free(wt);
	}
	free(x);
	return worst;
}

static const char *const all_specs[] = {
	"none", "smooth", "smooth:0.8", "hadamard", "hadamard:32", "random:7",
	"random:7:64", "cat1", "cat", "cat:32", "cat:full",
};

static void
check_preservation(int d, int n, const char *const *specs, int n_specs, double tol)
{
	int rows[] = { 24, 16 };
	struct fixture f;

	fixture_init(&f, d, n, 2, rows, 20.0f, (uint64_t)d);
	for (int s = 0; s < n_specs; s++) {
		struct transform_spec spec;
		struct transform t;
		struct error err;
		double e;

		assert_int_equal(transform_spec_parse(specs[s], &spec, &err), 0);
		if (transform_build(&spec, &f.stats, &f.layers, &t, &err) < 0)
			fail_msg("%s at d=%d: %s", specs[s], d, err.message);
		e = preservation_error(&f, &t, false);
		if (!(e < tol))
			fail_msg("%s at d=%d: relative error %g", specs[s], d, e);
		e = preservation_error(&f, &t, true);
		if (!(e < tol))
			fail_msg("%s at d=%d out of place: relative error %g", specs[s], d, e);
		transform_free(&t);
	}
	fixture_free(&f);
}

static void
preserves_function_width_96(void **state)
{
	check_preservation(96, 200, all_specs, sizeof(all_specs) / sizeof(all_specs[0]), 2e-5);
}

static void
preserves_function_width_172(void **state)
{
	check_preservation(172, 300, all_specs, sizeof(all_specs) / sizeof(all_specs[0]), 2e-5);
}

static void
preserves_function_width_5632(void **state)
{
	static const char *const specs[] = { "smooth", "hadamard", "hadamard:128",
					     "random:3:256", "cat1", "cat:128" };

	check_preservation(5632, 24, specs, sizeof(specs) / sizeof(specs[0]), 2e-5);
}

/* T^T T = I for the orthogonal kinds, from the dense matrix. */
static void
orthogonal_kinds_are_orthogonal(void **state)
{
	static const char *const specs[] = { "hadamard", "hadamard:16", "random:1",
					     "random:2:40" };
	int d = 172;
	struct site_stats stats = { .dim = d };
	float *m = alloc_array((size_t)d * d, sizeof(*m));

	for (size_t s = 0; s < sizeof(specs) / sizeof(specs[0]); s++) {
		struct transform_spec spec;
		struct transform t;
		double worst = 0;

		assert_int_equal(transform_spec_parse(specs[s], &spec, NULL), 0);
		assert_int_equal(transform_build(&spec, &stats, NULL, &t, NULL), 0);
		transform_dense_matrix(&t, m);
		for (int i = 0; i < d; i++)
			for (int j = 0; j < d; j++) {
				double dot = 0;

				for (int l = 0; l < d; l++)
					dot += (double)m[l * d + i] * m[l * d + j];
				worst = fmax(worst, fabs(dot - (i == j)));
			}
		if (!(worst < 1e-5))
			fail_msg("%s: max |T^T T - I| = %g", specs[s], worst);
		transform_free(&t);
	}
	free(m);
}

static void
cat1_matches_closed_form(void **state)
{
	int rows[] = { 20 };
	int d = 50;
	struct fixture f;
	struct transform_spec spec;
	struct transform t;
	double mean_x = 0, mean_w = 0, sw[50] = { 0 };

	fixture_init(&f, d, 400, 1, rows, 10.0f, 3);
	assert_int_equal(transform_spec_parse("cat1", &spec, NULL), 0);
	assert_int_equal(transform_build(&spec, &f.stats, &f.layers, &t, NULL), 0);
	assert_non_null(t.scale);
	for (int r = 0; r < 20; r++)
		for (int i = 0; i < d; i++)
			sw[i] += (double)f.weights[0][r * d + i] * f.weights[0][r * d + i];
	for (int i = 0; i < d; i++) {
		mean_x += f.stats.second_moment[i * d + i] / d;
		mean_w += sw[i] / d;
	}
	for (int i = 0; i < d; i++) {
		double ref = pow((sw[i] + spec.ridge * mean_w) /
				 (f.stats.second_moment[i * d + i] + spec.ridge * mean_x), 0.25);

		assert_true(fabs(t.scale[i] - ref) < 1e-6 * ref);
	}
	transform_free(&t);
	fixture_free(&f);
}

static void
conjugate_matches_dense_product(void **state)
{
	int rows[] = { 30 };
	int d = 40;
	struct fixture f;
	struct transform_spec spec;
	struct transform t;
	float *tm = alloc_array(d * d, sizeof(*tm));
	float *c = alloc_array(d * d, sizeof(*c));

	fixture_init(&f, d, 300, 1, rows, 10.0f, 4);
	assert_int_equal(transform_spec_parse("cat:16", &spec, NULL), 0);
	assert_int_equal(transform_build(&spec, &f.stats, &f.layers, &t, NULL), 0);
	transform_dense_matrix(&t, tm);
	transform_conjugate(&t, f.stats.second_moment, c);
	for (int i = 0; i < d; i++)
		for (int j = 0; j < d; j++) {
			double s = 0;

			for (int a = 0; a < d; a++)
				for (int b = 0; b < d; b++)
					s += (double)tm[i * d + a] * f.stats.second_moment[a * d + b] *
					     tm[j * d + b];
			assert_true(fabs(s - c[i * d + j]) < 1e-4 * (1 + fabs(s)));
		}
	/* The dense matrix applied to a token equals the fast path. */
	{
		float x[40];
		double worst = 0;

		memcpy(x, f.stats.sample, sizeof(x));
		transform_apply_activations(&t, x, 1);
		for (int i = 0; i < d; i++) {
			double s = 0;

			for (int j = 0; j < d; j++)
				s += (double)tm[i * d + j] * f.stats.sample[j];
			worst = fmax(worst, fabs(s - x[i]));
		}
		assert_true(worst < 1e-4);
	}
	transform_free(&t);
	fixture_free(&f);
	free(tm);
	free(c);
}

/* The block-wise diagonal equals the diagonal of the full T S T^T, at a width with an
 * odd factor and at a power of two (where Hadamard blocks take a shortcut). */
static void
conjugate_diagonal_matches_full(void **state)
{
	static const char *const specs[] = { "none", "smooth", "hadamard", "hadamard:32",
					     "random:4:48", "cat1", "cat:32", "cat:full" };
	static const int widths[] = { 172, 256 };
	int rows[] = { 30 };

	for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
		int d = widths[w];
		struct fixture f;
		float *c = alloc_array(d * d, sizeof(*c));
		double *diag = alloc_array(d, sizeof(*diag));

		fixture_init(&f, d, 300, 1, rows, 10.0f, 6);
		for (size_t s = 0; s < sizeof(specs) / sizeof(specs[0]); s++) {
			struct transform_spec spec;
			struct transform t;

			assert_int_equal(transform_spec_parse(specs[s], &spec, NULL), 0);
			assert_int_equal(transform_build(&spec, &f.stats, &f.layers, &t, NULL), 0);
			transform_conjugate(&t, f.stats.second_moment, c);
			transform_conjugate_diagonal(&t, f.stats.second_moment, diag);
			for (int i = 0; i < d; i++)
				if (!(fabs(diag[i] - c[i * d + i]) < 1e-4 * (1 + fabs(diag[i]))))
					fail_msg("%s at width %d: diagonal %d is %g, full product "
						 "gives %g", specs[s], d, i, diag[i],
						 (double)c[i * d + i]);
			transform_free(&t);
		}
		fixture_free(&f);
		free(c);
		free(diag);
	}
}

static void
spec_parse_format_round_trip(void **state)
{
	static const char *const good[] = { "none", "smooth:0.5", "smooth:0.8", "hadamard",
					    "hadamard:64", "random:0", "random:42:128", "cat1",
					    "cat", "cat:128", "cat:full" };
	struct transform_spec spec;
	struct error err;
	char buf[64];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(transform_spec_parse(good[i], &spec, &err), 0);
		transform_spec_format(&spec, buf, sizeof(buf));
		assert_string_equal(buf, good[i]);
	}
	assert_int_equal(transform_spec_parse("smooth", &spec, &err), 0);
	assert_true(spec.alpha == 0.5);
	assert_int_equal(transform_spec_parse("cat:0", &spec, &err), -1);
	assert_int_equal(transform_spec_parse("hadamard:x", &spec, &err), -1);
	assert_int_equal(transform_spec_parse("smooth:2", &spec, &err), -1);
	assert_int_equal(transform_spec_parse("rotate", &spec, &err), -1);
	assert_non_null(strstr(err.message, "unknown transform"));
	assert_int_equal(transform_spec_parse("cat", &spec, &err), 0);
	assert_int_equal(transform_block_size(&spec, 4096), 128);
	assert_int_equal(transform_block_size(&spec, 96), 96);
}

static void
zero_channels_fall_back_to_identity(void **state)
{
	int rows[] = { 8 };
	int d = 32;
	struct fixture f;
	struct transform_spec spec;
	struct transform t;

	fixture_init(&f, d, 64, 1, rows, 1.0f, 5);
	/* Channels 0..15 never fire: a zero CAT block and zero SmoothQuant maxima. */
	for (int t0 = 0; t0 < 64; t0++)
		memset(f.stats.sample + t0 * d, 0, sizeof(float) * 16);
	fixture_stats_from_sample(&f.stats);
	assert_int_equal(transform_spec_parse("cat:16", &spec, NULL), 0);
	assert_int_equal(transform_build(&spec, &f.stats, &f.layers, &t, NULL), 0);
	assert_true(t.flags & TRANSFORM_FLAG_DEGENERATE_BLOCK);
	assert_true(preservation_error(&f, &t, true) < 1e-5);
	transform_free(&t);
	assert_int_equal(transform_spec_parse("smooth", &spec, NULL), 0);
	assert_int_equal(transform_build(&spec, &f.stats, &f.layers, &t, NULL), 0);
	assert_true(t.flags & TRANSFORM_FLAG_DEGENERATE_CHANNEL);
	transform_free(&t);
	fixture_free(&f);
}

/* Spec strings round-trip through the formatter, and malformed ones are rejected
 * rather than clamped, wrapped or read with a sign or blank. */
static void
spec_parse_strict(void **state)
{
	static const char *const good[] = { "none", "smooth:0.5", "hadamard", "hadamard:64",
					    "random:7", "random:18446744073709551615:16", "cat1",
					    "cat", "cat:32", "cat:full" };
	static const char *const bad[] = { "random:18446744073709551616", "random:-1", "random: 4",
					   "random:+4", "cat: 4", "cat:-1", "cat:0", "cat:4.5",
					   "hadamard:0", "cat:full:3", "magic" };
	struct transform_spec spec, again;
	struct error err;
	char text[64];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (transform_spec_parse(good[i], &spec, &err) != 0)
			fail_msg("'%s' was rejected: %s", good[i], err.message);
		transform_spec_format(&spec, text, sizeof(text));
		assert_int_equal(transform_spec_parse(text, &again, &err), 0);
		assert_int_equal(again.kind, spec.kind);
		assert_int_equal(again.block, spec.block);
		assert_true(again.seed == spec.seed);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (transform_spec_parse(bad[i], &spec, &err) == 0)
			fail_msg("'%s' was accepted", bad[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spec_parse_strict),
		cmocka_unit_test(preserves_function_width_96),
		cmocka_unit_test(preserves_function_width_172),
		cmocka_unit_test(preserves_function_width_5632),
		cmocka_unit_test(orthogonal_kinds_are_orthogonal),
		cmocka_unit_test(cat1_matches_closed_form),
		cmocka_unit_test(conjugate_matches_dense_product),
		cmocka_unit_test(conjugate_diagonal_matches_full),
		cmocka_unit_test(spec_parse_format_round_trip),
		cmocka_unit_test(zero_channels_fall_back_to_identity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
