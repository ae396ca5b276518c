/* Tests of the diagnostics engine against independent computations: plain loops, a
 * Jacobi eigenvalue routine, closed forms and the facts the noise model implies. */
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
#include "catscope/metrics.h"
#include "catscope/parallel.h"
#include "catscope/quant.h"
#include "catscope/transform.h"
#include "site_fixture.h"

/* Eigenvalues of a symmetric n x n matrix by cyclic Jacobi rotations (destroys a). */
static void
jacobi_eigenvalues(int n, double *a, double *eig)
{
	for (int sweep = 0; sweep < 100; sweep++) {
		double off = 0;

		for (int p = 0; p < n; p++)
			for (int q = p + 1; q < n; q++)
				off += a[p * n + q] * a[p * n + q];
		if (off < 1e-26)
			break;
		for (int p = 0; p < n; p++)
			for (int q = p + 1; q < n; q++) {
				double apq = a[p * n + q], theta, t, c, s;

				if (fabs(apq) < 1e-300)
					continue;
				theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
				t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
				c = 1 / sqrt(t * t + 1);
				s = t * c;
				for (int k = 0; k < n; k++) {
					double akp = a[k * n + p], akq = a[k * n + q];

					a[k * n + p] = c * akp - s * akq;
					a[k * n + q] = s * akp + c * akq;
				}
				for (int k = 0; k < n; k++) {
					double apk = a[p * n + k], aqk = a[q * n + k];

					a[p * n + k] = c * apk - s * aqk;
					a[q * n + k] = s * apk + c * aqk;
				}
			}
	}
	for (int i = 0; i < n; i++)
		eig[i] = a[i * n + i];
}

/* sum sqrt(lambda) of W_b Sx_bb W_b^T for columns [start, start + s), all layers. */
static double
reference_trace_root(const struct fixture *f, int start, int s)
{
	int d = f->stats.dim, m = 0;
	double *g, *eig, total = 0;
	const float *rows[128];

	for (int l = 0; l < f->layers.count; l++)
		for (int r = 0; r < f->layers.layer[l].rows; r++)
			rows[m++] = f->layers.layer[l].weight + (int64_t)r * d;
	g = alloc_array(m * m, sizeof(*g));
	eig = alloc_array(m, sizeof(*eig));
	for (int a = 0; a < m; a++)
		for (int b = 0; b < m; b++) {
			double sum = 0;

			for (int i = start; i < start + s; i++)
				for (int j = start; j < start + s; j++)
					sum += rows[a][i] * f->stats.second_moment[i * d + j] * rows[b][j];
			g[a * m + b] = sum;
		}
	jacobi_eigenvalues(m, g, eig);
	for (int i = 0; i < m; i++)
		total += sqrt(fmax(eig[i], 0));
	free(g);
	free(eig);
	return total;
}

/* A = tr(Sw Sx) / (tr Sw tr Sx), by loops. */
static double
reference_alignment(const struct fixture *f)
{
	int d = f->stats.dim;
	double tw = 0, tx = 0;

	for (int l = 0; l < f->layers.count; l++)
		for (int64_t i = 0; i < (int64_t)f->layers.layer[l].rows * d; i++)
			tw += (double)f->layers.layer[l].weight[i] * f->layers.layer[l].weight[i];
	for (int i = 0; i < d; i++)
		tx += f->stats.second_moment[i * d + i];
	return fixture_trace_sw_sx(f) / (tw * tx);
}

/* CAT ridge for the next evaluations; 0 keeps the default. */
static double ridge_override;

static void
evaluate(const struct fixture *f, const char *spec_text, const struct quant_config *qc,
	 const struct engine_options *opt, struct site_result *res)
{
	struct transform_spec spec;
	struct transform t;
	struct error err;

	assert_int_equal(transform_spec_parse(spec_text, &spec, &err), 0);
	if (ridge_override > 0)
		spec.ridge = ridge_override;
	if (transform_build(&spec, &f->stats, &f->layers, &t, &err) < 0)
		fail_msg("%s: %s", spec_text, err.message);
	if (engine_evaluate_transform(&f->stats, &f->layers, &t, qc, opt, res, &err) < 0)
		fail_msg("%s: %s", spec_text, err.message);
	transform_free(&t);
}

static void
rel_close(double a, double b, double tol, const char *what)
{
	if (!(fabs(a - b) <= tol * fabs(b)))
		fail_msg("%s: %.9g vs %.9g (relative tolerance %g)", what, a, b, tol);
}

static const int two_layers[] = { 24, 16 };

static void
alignment_matches_loops(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result res;

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 1);
	quant_config_default(&qc);
	evaluate(&f, "none", &qc, NULL, &res);
	rel_close(res.alignment, reference_alignment(&f), 1e-5, "A (none)");
	rel_close(res.alignment_raw, reference_alignment(&f), 1e-5, "A before transform");
	fixture_free(&f);
}

static void
alignment_unchanged_by_rotations(void **state)
{
	static const char *const specs[] = { "hadamard", "hadamard:32", "random:5",
					     "random:9:48" };
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	double ref;

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 2);
	quant_config_default(&qc);
	ref = reference_alignment(&f);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		evaluate(&f, specs[i], &qc, NULL, &res);
		rel_close(res.alignment, ref, 1e-4, specs[i]);
	}
	fixture_free(&f);
}

static void
cat_block_reaches_best_k(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct engine_options opt;
	struct site_result res;
	double roots = 0, ref;

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 3);
	quant_config_default(&qc);
	engine_options_default(&opt);
	opt.best_block = 32;
	for (int b = 0; b < 96; b += 32)
		roots += reference_trace_root(&f, b, 32);
	ref = fixture_trace_sw_sx(&f) / (roots * roots);
	evaluate(&f, "cat:32", &qc, &opt, &res);
	rel_close(res.best_k, ref, 1e-6, "A*_32 against Jacobi eigenvalues");
	rel_close(res.alignment, ref, 1e-4, "A after CAT block 32");
	assert_true(res.alignment > reference_alignment(&f));
	fixture_free(&f);
}

static void
cat_full_reaches_best(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	double root, ref;

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 4);
	quant_config_default(&qc);
	root = reference_trace_root(&f, 0, 96);
	ref = fixture_trace_sw_sx(&f) / (root * root);
	/* Sw has rank 40 < 96 here, and the ridge costs O(sqrt(ridge)) of alignment. */
	ridge_override = 1e-12;
	evaluate(&f, "cat:full", &qc, NULL, &res);
	ridge_override = 0;
	rel_close(res.best_full, ref, 1e-6, "A* against Jacobi eigenvalues");
	rel_close(res.alignment, ref, 1e-4, "A after CAT full");
	assert_true(res.best_full >= res.best_k * (1 - 1e-9));
	assert_true(res.best_k >= res.best_1 * (1 - 1e-9));
	/* A comes from float weights after the transform: a relative 2e-6 is rounding. */
	assert_true(res.headroom_db >= -1e-5);
	fixture_free(&f);
}

static void
cat1_reaches_best_1(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	int d = 64;
	double sw[64] = { 0 }, sum = 0, ref;

	fixture_init(&f, d, 300, 2, two_layers, 20.0f, 5);
	quant_config_default(&qc);
	for (int l = 0; l < 2; l++)
		for (int r = 0; r < two_layers[l]; r++)
			for (int i = 0; i < d; i++)
				sw[i] += (double)f.weights[l][r * d + i] * f.weights[l][r * d + i];
	for (int i = 0; i < d; i++)
		sum += sqrt(sw[i] * f.stats.second_moment[i * d + i]);
	ref = fixture_trace_sw_sx(&f) / (sum * sum);
	evaluate(&f, "cat1", &qc, NULL, &res);
	rel_close(res.best_1, ref, 1e-6, "A*_1 closed form");
	rel_close(res.alignment, ref, 1e-4, "A after CAT k=1");
	fixture_free(&f);
}

/* A(T x, W T^-1) for random invertible lower-triangular T never exceeds A*. */
static void
random_invertible_never_beats_best(void **state)
{
	int d = 24, rows[] = { 10 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	uint64_t rng = 77;
	double tm[24 * 24], wt[10 * 24];

	fixture_init(&f, d, 200, 1, rows, 8.0f, 6);
	quant_config_default(&qc);
	evaluate(&f, "none", &qc, NULL, &res);
	for (int trial = 0; trial < 50; trial++) {
		double num = fixture_trace_sw_sx(&f), frob = 0, trx = 0;

		for (int i = 0; i < d; i++)
			for (int j = 0; j < d; j++)
				tm[i * d + j] = j < i ? linalg_rng_normal(&rng)
					      : j == i ? 0.2 + fabs(linalg_rng_normal(&rng)) * 3 : 0;
		/* W T^-1 row by row: solve v T = w (back substitution on T^T). */
		for (int r = 0; r < 10; r++)
			for (int j = d - 1; j >= 0; j--) {
				double s = f.weights[0][r * d + j];

				for (int i = j + 1; i < d; i++)
					s -= wt[r * d + i] * tm[i * d + j];
				wt[r * d + j] = s / tm[j * d + j];
				frob += wt[r * d + j] * wt[r * d + j];
			}
		for (int i = 0; i < d; i++)
			for (int a = 0; a < d; a++)
				for (int b = 0; b < d; b++)
					trx += tm[i * d + a] * f.stats.second_moment[a * d + b] * tm[i * d + b];
		assert_true(num / (frob * trx) <= res.best_full * (1 + 1e-9));
	}
	fixture_free(&f);
}

static void
isotropic_alignment_is_one_over_d(void **state)
{
	int d = 80;
	struct fixture f;
	struct quant_config qc;
	struct site_result res;

	fixture_init(&f, d, 64, 2, two_layers, 1.0f, 7);
	memset(f.stats.second_moment, 0, sizeof(double) * d * d);
	for (int i = 0; i < d; i++)
		f.stats.second_moment[i * d + i] = 2.5;
	quant_config_default(&qc);
	evaluate(&f, "none", &qc, NULL, &res);
	rel_close(res.alignment, 1.0 / d, 1e-6, "A of isotropic x");
	evaluate(&f, "hadamard", &qc, NULL, &res);
	rel_close(res.alignment, 1.0 / d, 1e-5, "A of isotropic x after Hadamard");
	fixture_free(&f);
}

static void
concentration_floors(void **state)
{
	int d = 16, rows[] = { 4 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res;

	fixture_init(&f, d, 32, 1, rows, 1.0f, 8);
	/* One-hot tokens: E||x||^2 = v^2, range (symmetric) 2v, so C = 1/4. */
	memset(f.stats.sample, 0, sizeof(float) * 32 * d);
	for (int t = 0; t < 32; t++)
		f.stats.sample[t * d + t % d] = (float)(t + 1);
	fixture_stats_from_sample(&f.stats);
	quant_config_default(&qc);
	evaluate(&f, "none", &qc, NULL, &res);
	rel_close(res.c_x, 0.25, 1e-6, "C of one-hot tokens (symmetric)");
	rel_close(res.c_x_raw, 0.25, 1e-6, "C from statistics (symmetric)");
	/* Tokens (v, -v, 0, ...): range (asymmetric) 2v, ||x||^2 = 2v^2, so C = 1/2. */
	memset(f.stats.sample, 0, sizeof(float) * 32 * d);
	for (int t = 0; t < 32; t++) {
		f.stats.sample[t * d + t % 8] = (float)(t + 1);
		f.stats.sample[t * d + 8 + t % 8] = -(float)(t + 1);
	}
	fixture_stats_from_sample(&f.stats);
	qc.act.mode = QUANT_ASYMMETRIC;
	evaluate(&f, "none", &qc, NULL, &res);
	rel_close(res.c_x, 0.5, 1e-6, "C at the asymmetric floor");
	fixture_free(&f);
}

static void
concentration_scale_invariant(void **state)
{
	int d = 64;
	struct fixture f;
	struct quant_config qc;
	struct site_result a, b;

	fixture_init(&f, d, 100, 2, two_layers, 5.0f, 9);
	quant_config_default(&qc);
	evaluate(&f, "hadamard", &qc, NULL, &a);
	for (int i = 0; i < 100 * d; i++)
		f.stats.sample[i] *= 37.0f;
	for (int l = 0; l < 2; l++)
		for (int i = 0; i < two_layers[l] * d; i++)
			f.weights[l][i] *= 0.01f;
	fixture_stats_from_sample(&f.stats);
	evaluate(&f, "hadamard", &qc, NULL, &b);
	rel_close(b.c_x, a.c_x, 1e-5, "C(x) after scaling x");
	rel_close(b.c_x_raw, a.c_x_raw, 1e-5, "C(x) from statistics after scaling x");
	rel_close(b.c_w, a.c_w, 1e-5, "C(W) after scaling W");
	rel_close(b.alignment, a.alignment, 1e-5, "A after scaling");
	fixture_free(&f);
}

static void
six_db_per_bit_measured(void **state)
{
	int rows[] = { 64 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res[3];

	fixture_init(&f, 256, 512, 1, rows, 1.0f, 10);
	quant_config_default(&qc);
	for (int b = 6; b <= 8; b++) {
		qc.weight.bits = qc.act.bits = b;
		evaluate(&f, "none", &qc, NULL, &res[b - 6]);
	}
	for (int b = 0; b < 2; b++) {
		double gain = res[b + 1].measured.total_db - res[b].measured.total_db;

		if (!(fabs(gain - 6.02) < 0.25))
			fail_msg("gain from %d to %d bits: %.3f dB", b + 6, b + 7, gain);
	}
	fixture_free(&f);
}

static void
predicted_matches_measured_gaussian(void **state)
{
	int rows[] = { 128 };
	int bits[] = { 4, 8 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res;

	fixture_init(&f, 256, 1024, 1, rows, 1.0f, 11);
	quant_config_default(&qc);
	for (int i = 0; i < 2; i++) {
		qc.weight.bits = qc.act.bits = bits[i];
		evaluate(&f, "none", &qc, NULL, &res);
		if (!(fabs(res.gap_db) < 0.5))
			fail_msg("W%dA%d: measured %.2f dB, predicted %.2f dB", bits[i], bits[i],
				 res.measured.total_db, res.predicted.total_db);
		assert_true(fabs(res.measured.weight_db - res.predicted.weight_db) < 0.5);
		assert_true(fabs(res.measured.act_db - res.predicted.act_db) < 0.5);
		evaluate(&f, "hadamard", &qc, NULL, &res);
		assert_true(fabs(res.gap_db) < 0.5);
	}
	fixture_free(&f);
}

/* With a clipping ratio below 1 the prediction counts the clipped values' exact error:
 * it stays within 0.5 dB of the measurement at moderate clipping, and strong clipping
 * lowers it instead of raising it by -20 log10(clip) dB. */
static void
predicted_counts_clipping(void **state)
{
	static const float clips[] = { 0.9f, 0.7f };
	int rows[] = { 128 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res, unclipped;

	fixture_init(&f, 256, 1024, 1, rows, 1.0f, 13);
	quant_config_default(&qc);
	evaluate(&f, "none", &qc, NULL, &unclipped);
	for (size_t i = 0; i < sizeof(clips) / sizeof(clips[0]); i++) {
		qc.weight.clip = qc.act.clip = clips[i];
		evaluate(&f, "none", &qc, NULL, &res);
		if (!(fabs(res.measured.weight_db - res.predicted.weight_db) < 0.5))
			fail_msg("clip %g: weights measured %.2f dB, predicted %.2f dB", clips[i],
				 res.measured.weight_db, res.predicted.weight_db);
		if (!(fabs(res.measured.act_db - res.predicted.act_db) < 0.5))
			fail_msg("clip %g: activations measured %.2f dB, predicted %.2f dB", clips[i],
				 res.measured.act_db, res.predicted.act_db);
	}
	qc.weight.clip = qc.act.clip = 0.1f;
	evaluate(&f, "none", &qc, NULL, &res);
	assert_true(res.predicted.weight_db < unclipped.predicted.weight_db);
	assert_true(res.predicted.act_db < unclipped.predicted.act_db);
	fixture_free(&f);
}

/* Per channel and per token without clipping, 12 N^2 C A is the prediction itself. */
static void
factorisation_equals_prediction(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result res;

	fixture_init(&f, 96, 200, 2, two_layers, 20.0f, 12);
	quant_config_default(&qc);
	evaluate(&f, "cat:32", &qc, NULL, &res);
	rel_close(res.factorised.weight_db, res.predicted.weight_db, 1e-4, "weight SQNR");
	rel_close(res.factorised.act_db, res.predicted.act_db, 1e-4, "activation SQNR");
	rel_close(res.factorised.total_db, res.predicted.total_db, 1e-4, "SQNR");
	fixture_free(&f);
}

static void
gptq_measured_not_worse_than_rtn(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result rtn, gptq;

	fixture_init(&f, 96, 400, 2, two_layers, 20.0f, 13);
	quant_config_default(&qc);
	qc.weight.bits = 3;
	evaluate(&f, "none", &qc, NULL, &rtn);
	qc.rounding = QUANT_GPTQ;
	evaluate(&f, "none", &qc, NULL, &gptq);
	assert_true(gptq.measured.weight_db > rtn.measured.weight_db);
	qc.clip_search = true;
	qc.rounding = QUANT_RTN;
	evaluate(&f, "none", &qc, NULL, &gptq);
	assert_true(gptq.measured.weight_db >= rtn.measured.weight_db - 1e-6);
	fixture_free(&f);
}

static void
nonfinite_input_flagged(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result res;

	fixture_init(&f, 64, 100, 2, two_layers, 5.0f, 14);
	quant_config_default(&qc);
	f.weights[1][17] = NAN;
	f.weights[0][3] = INFINITY;
	f.stats.sample[5 * 64 + 9] = NAN;
	evaluate(&f, "cat:32", &qc, NULL, &res);
	assert_true(res.flags & METRICS_FLAG_NONFINITE_WEIGHT);
	assert_true(res.flags & METRICS_FLAG_NONFINITE_SAMPLE);
	assert_int_equal(res.tokens_used, 99);
	assert_true(isfinite(res.measured.total_db));
	assert_true(isfinite(res.predicted.total_db));
	assert_true(isfinite(res.alignment));
	assert_true(isfinite(res.best_k));
	assert_true(res.layer[1].flags & METRICS_FLAG_NONFINITE_WEIGHT);
	assert_false(res.layer[0].flags & METRICS_FLAG_NONFINITE_SAMPLE);
	fixture_free(&f);
}

static void
degenerate_data_flagged(void **state)
{
	int d = 32, rows[] = { 8 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	struct error err;

	fixture_init(&f, d, 50, 1, rows, 1.0f, 15);
	memset(f.weights[0], 0, sizeof(float) * d);              /* row 0 */
	for (int t = 0; t < 50; t++)
		f.stats.sample[t * d + 4] = 0;                   /* channel 4 */
	memset(f.stats.sample + 7 * d, 0, sizeof(float) * d);    /* token 7 */
	fixture_stats_from_sample(&f.stats);
	quant_config_default(&qc);
	evaluate(&f, "cat:16", &qc, NULL, &res);
	assert_true(res.flags & METRICS_FLAG_ZERO_ROW);
	assert_true(res.flags & METRICS_FLAG_ZERO_CHANNEL);
	assert_true(res.flags & METRICS_FLAG_CONSTANT_TOKEN);
	assert_true(isfinite(res.measured.total_db));
	assert_true(isfinite(res.alignment));

	/* All-zero weights: no signal, so SQNR is NaN and flagged. */
	memset(f.weights[0], 0, sizeof(float) * 8 * d);
	evaluate(&f, "none", &qc, NULL, &res);
	assert_true(res.flags & METRICS_FLAG_ZERO_SIGNAL);
	assert_true(isnan(res.predicted.total_db));

	/* A second moment with NaN is unusable input. */
	f.stats.second_moment[3] = NAN;
	{
		struct transform_spec spec;

		transform_spec_parse("none", &spec, NULL);
		assert_int_equal(engine_evaluate_site(&f.stats, &f.layers, &spec, &qc, &res, &err),
				 -1);
		assert_non_null(strstr(err.message, "NaN"));
	}
	fixture_free(&f);
}

static void
full_optimum_skipped_above_limit(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct engine_options opt;
	struct site_result res;

	fixture_init(&f, 64, 50, 1, two_layers, 1.0f, 16);
	quant_config_default(&qc);
	engine_options_default(&opt);
	opt.full_limit = 32;
	evaluate(&f, "none", &qc, &opt, &res);
	assert_true(res.flags & METRICS_FLAG_FULL_SKIPPED);
	assert_true(isnan(res.best_full));
	assert_true(isfinite(res.headroom_db));
	fixture_free(&f);
}

/* Reusing the invariants across transforms must give exactly what a fresh evaluation
 * gives, including when the second transform requests another block size. */
static void
invariants_reuse_matches_fresh(void **state)
{
	static const char *const specs[] = { "none", "hadamard", "cat:32", "cat", "cat1", "smooth" };
	struct fixture f;
	struct quant_config qc;
	struct engine_options cached, fresh;
	struct engine_invariants invariants = { 0 };

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 9);
	quant_config_default(&qc);
	engine_options_default(&cached);
	engine_options_default(&fresh);
	cached.invariants = &invariants;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct site_result a, b;

		evaluate(&f, specs[i], &qc, &cached, &a);
		evaluate(&f, specs[i], &qc, &fresh, &b);
		assert_true(invariants.has_signal);
		for (int l = 0; l < 2; l++)
			assert_true(a.layer[l].signal == b.layer[l].signal);
		assert_true(a.alignment == b.alignment);
		assert_true(a.best_1 == b.best_1);
		assert_true(a.best_k == b.best_k);
		assert_true(a.best_full == b.best_full);
		assert_int_equal(a.best_block, b.best_block);
		assert_true(a.measured.total_db == b.measured.total_db);
		assert_true(a.measured.weight_db == b.measured.weight_db);
		assert_true(a.measured.act_db == b.measured.act_db);
		assert_true(a.predicted.total_db == b.predicted.total_db);
	}
	assert_true(engine_invariants_bytes(&invariants) > 0);
	engine_invariants_release(&invariants);
	fixture_free(&f);
}

/* Passes split into parts by size alone, and scratch buffers carry nothing from one
 * evaluation to the next. So one thread without scratch must give the same bits as
 * three threads with a scratch that a wider site grew first, twice over. */
static void
threads_and_scratch_keep_results(void **state)
{
	static const char *const specs[] = { "none", "hadamard", "cat:64", "smooth", "cat1" };
	static const int rows[] = { 300, 200 };
	struct fixture f, wide;
	struct quant_config qc;
	struct engine_options alone, shared;
	struct engine_scratch scratch = { 0 };
	struct site_result warm;

	(void)state;
	fixture_init(&f, 256, 400, 2, rows, 20.0f, 11);
	fixture_init(&wide, 320, 400, 2, rows, 20.0f, 12);
	quant_config_default(&qc);
	qc.weight.group_size = 64;
	engine_options_default(&alone);
	engine_options_default(&shared);
	shared.scratch = &scratch;
	evaluate(&wide, "hadamard", &qc, &shared, &warm);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct site_result a, runs[2];

		parallel_set_threads(1);
		evaluate(&f, specs[i], &qc, &alone, &a);
		parallel_set_threads(3);
		evaluate(&f, specs[i], &qc, &shared, &runs[0]);
		evaluate(&f, specs[i], &qc, &shared, &runs[1]);
		for (int run = 0; run < 2; run++) {
			const struct site_result *r = &runs[run];

			assert_true(r->c_x == a.c_x);
			assert_true(r->c_w == a.c_w);
			assert_true(r->alignment == a.alignment);
			assert_true(r->predicted.total_db == a.predicted.total_db);
			assert_true(r->measured.total_db == a.measured.total_db);
			assert_true(r->measured.weight_db == a.measured.weight_db);
			assert_true(r->measured.act_db == a.measured.act_db);
			assert_true(isfinite(r->measured.total_db));
		}
	}
	parallel_set_threads(0);
	assert_true(engine_scratch_bytes(&scratch) > 0);
	engine_scratch_release(&scratch);
	assert_int_equal(engine_scratch_bytes(&scratch), 0);
	fixture_free(&f);
	fixture_free(&wide);
}

/* Round-to-nearest of v (n values) in place on the documented grids, with the step
 * and the division in float as a float implementation would do them. Symmetric: codes
 * -2^(b-1) .. 2^(b-1) - 1 times Delta = 2 max|v| / (2^b - 1). Asymmetric: codes
 * 0 .. 2^b - 1 minus an integer zero point z = round(-min / Delta), with
 * Delta = (max - min) / (2^b - 1). */
static void
reference_rtn(float *v, int n, int bits, bool symmetric)
{
	float lo = v[0], hi = v[0], amax = 0, step, zero = 0;
	float code_lo = symmetric ? -(float)(1 << (bits - 1)) : 0;
	float code_hi = symmetric ? (float)((1 << (bits - 1)) - 1) : (float)((1 << bits) - 1);

	for (int i = 0; i < n; i++) {
		lo = fminf(lo, v[i]);
		hi = fmaxf(hi, v[i]);
		amax = fmaxf(amax, fabsf(v[i]));
	}
	step = symmetric ? 2 * amax / ((1 << bits) - 1) : (hi - lo) / ((1 << bits) - 1);
	if (!(step > 0))
		return;
	if (!symmetric)
		zero = nearbyintf(-lo / step);
	for (int i = 0; i < n; i++) {
		float code = nearbyintf(v[i] / step) + zero;

		v[i] = (fminf(fmaxf(code, code_lo), code_hi) - zero) * step;
	}
}

/* 10 log10 of the output power over the squared error of (wq, xq) against (w, x), by
 * plain double loops over tokens (x is n x d, w rows x d, both after the transform). */
static double
reference_sqnr(const float *w, const float *wq, const float *x, const float *xq, int rows,
	       int d, int n)
{
	double signal = 0, noise = 0;

	for (int64_t t = 0; t < n; t++)
		for (int64_t r = 0; r < rows; r++) {
			double y = 0, yq = 0;

			for (int i = 0; i < d; i++) {
				y += (double)w[r * d + i] * x[t * d + i];
				yq += (double)wq[r * d + i] * xq[t * d + i];
			}
			signal += y * y;
			noise += (y - yq) * (y - yq);
		}
	return 10 * log10(signal / noise);
}

/* Evaluates spec and checks the measured SQNRs (total, weights only, activations only)
 * against plain loops: W' = W T^T and x' = T x with T as a dense matrix (orthogonal
 * transforms only), then the scalar RTN per row and per token. */
static void
check_measured_sqnr(const char *spec_text, enum quant_mode mode)
{
	static const int one_layer[] = { 40 };
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	struct transform_spec spec;
	struct transform t;
	int d = 64, n = 200, rows = 40;
	float *tm = alloc_array((size_t)d * d, sizeof(*tm));
	float *w = alloc_array((size_t)rows * d, sizeof(*w));
	float *wq = alloc_array((size_t)rows * d, sizeof(*wq));
	float *x = alloc_array((size_t)n * d, sizeof(*x));
	float *xq = alloc_array((size_t)n * d, sizeof(*xq));

	fixture_init(&f, d, n, 1, one_layer, 20.0f, 21);
	quant_config_default(&qc);
	qc.weight.mode = qc.act.mode = mode;
	evaluate(&f, spec_text, &qc, NULL, &res);

	assert_int_equal(transform_spec_parse(spec_text, &spec, NULL), 0);
	assert_int_equal(transform_build(&spec, &f.stats, &f.layers, &t, NULL), 0);
	transform_dense_matrix(&t, tm);
	transform_free(&t);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < d; j++) {
			double sum = 0;

			for (int i = 0; i < d; i++)
				sum += (double)f.layers.layer[0].weight[r * d + i] * tm[j * d + i];
			w[r * d + j] = (float)sum;
		}
	for (int64_t tok = 0; tok < n; tok++)
		for (int64_t j = 0; j < d; j++) {
			double sum = 0;

			for (int i = 0; i < d; i++)
				sum += (double)tm[j * d + i] * f.stats.sample[tok * d + i];
			x[tok * d + j] = (float)sum;
		}
	memcpy(wq, w, sizeof(*w) * rows * d);
	memcpy(xq, x, sizeof(*x) * n * d);
	for (int r = 0; r < rows; r++)
		reference_rtn(wq + (int64_t)r * d, d, 4, mode == QUANT_SYMMETRIC);
	for (int tok = 0; tok < n; tok++)
		reference_rtn(xq + (int64_t)tok * d, d, 4, mode == QUANT_SYMMETRIC);

	assert_int_equal(res.tokens_used, n);
	assert_false(res.flags & METRICS_FLAG_PARTS_SKIPPED);
	rel_close(res.measured.total_db, reference_sqnr(w, wq, x, xq, rows, d, n), 1e-4,
		  "measured total");
	rel_close(res.measured.weight_db, reference_sqnr(w, wq, x, x, rows, d, n), 1e-4,
		  "measured weights only");
	rel_close(res.measured.act_db, reference_sqnr(w, w, x, xq, rows, d, n), 1e-4,
		  "measured activations only");
	free(tm);
	free(w);
	free(wq);
	free(x);
	free(xq);
	fixture_free(&f);
}

/* The symmetric grid puts the largest magnitude exactly halfway between two codes, so
 * a last-bit difference in W' (the fast Hadamard against a dense product) may round it
 * either way. The symmetric case therefore runs without a transform, and the
 * asymmetric grid, which has no such tie, checks the transformed path. */
static void
measured_sqnr_matches_loops(void **state)
{
	check_measured_sqnr("none", QUANT_SYMMETRIC);
	check_measured_sqnr("none", QUANT_ASYMMETRIC);
	check_measured_sqnr("hadamard", QUANT_ASYMMETRIC);
	check_measured_sqnr("random:7", QUANT_ASYMMETRIC);
}

/* Skipping the parts leaves the total unchanged and sets METRICS_FLAG_PARTS_SKIPPED. */
static void
skipped_parts_keep_total(void **state)
{
	static const char *const specs[] = { "none", "hadamard", "cat" };
	struct fixture f;
	struct quant_config qc;
	struct engine_options with, without;
	struct engine_invariants invariants = { 0 };

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 23);
	quant_config_default(&qc);
	engine_options_default(&with);
	engine_options_default(&without);
	without.measure_parts = false;
	without.invariants = &invariants;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct site_result a, b;

		evaluate(&f, specs[i], &qc, &with, &a);
		evaluate(&f, specs[i], &qc, &without, &b);
		assert_true(b.flags & METRICS_FLAG_PARTS_SKIPPED);
		assert_false(a.flags & METRICS_FLAG_PARTS_SKIPPED);
		assert_true(isnan(b.measured.weight_db));
		assert_true(isnan(b.measured.act_db));
		assert_true(isfinite(a.measured.weight_db));
		assert_true(a.measured.total_db == b.measured.total_db);
		for (int l = 0; l < 2; l++)
			assert_true(a.layer[l].measured.total_db == b.layer[l].measured.total_db);
	}
	assert_int_equal(invariants.output_tokens, 300);
	/* The outputs of both layers and one diagonal of T Sx T^T per transform. */
	assert_true(engine_invariants_bytes(&invariants) ==
		    (size_t)300 * (two_layers[0] + two_layers[1]) * sizeof(float) +
			    3 * 96 * sizeof(double));
	engine_invariants_release(&invariants);
	assert_true(engine_invariants_bytes(&invariants) == 0);
	fixture_free(&f);
}

/* The diagonals of T Sx T^T are kept per transform, up to ENGINE_DIAGONALS_KEPT, and the
 * least recently used one gives way. */
static void
diagonal_cache_evicts_oldest(void **state)
{
	static const char *const specs[] = { "none", "hadamard", "cat", "cat1", "smooth" };
	struct engine_invariants invariants = { 0 };
	struct transform_spec spec[5];
	double *diag;

	(void)state;
	for (int i = 0; i < 5; i++)
		assert_int_equal(transform_spec_parse(specs[i], &spec[i], NULL), 0);
	for (int i = 0; i < 4; i++) {
		diag = alloc_array(8, sizeof(*diag));
		diag[0] = i;
		engine_invariants_keep_diagonal(&invariants, &spec[i], 8, diag);
	}
	/* Using "none" makes "hadamard" the oldest. */
	assert_non_null(engine_invariants_diagonal(&invariants, &spec[0], 8));
	assert_null(engine_invariants_diagonal(&invariants, &spec[0], 9));
	diag = alloc_array(8, sizeof(*diag));
	diag[0] = 4;
	engine_invariants_keep_diagonal(&invariants, &spec[4], 8, diag);
	assert_null(engine_invariants_diagonal(&invariants, &spec[1], 8));
	for (int i = 0; i < 5; i++) {
		const double *stored = engine_invariants_diagonal(&invariants, &spec[i], 8);

		if (i == 1)
			continue;
		assert_non_null(stored);
		assert_true(stored[0] == i);
	}
	/* Keeping a spec again replaces its own entry. */
	diag = alloc_array(8, sizeof(*diag));
	diag[0] = 40;
	engine_invariants_keep_diagonal(&invariants, &spec[4], 8, diag);
	assert_true(engine_invariants_diagonal(&invariants, &spec[4], 8)[0] == 40);
	assert_non_null(engine_invariants_diagonal(&invariants, &spec[2], 8));
	assert_true(engine_invariants_bytes(&invariants) == 4 * 8 * sizeof(double));
	engine_invariants_release(&invariants);
}

/* A side kept in float (0 bits) adds no noise, so its SQNRs are +Inf and the totals
 * equal the other side's. The identity uses the stored sample in place, and 400 tokens
 * of width 256 are enough for the sample pass to run in parts. */
static void
unquantized_side_adds_no_noise(void **state)
{
	static const char *const specs[] = { "none", "hadamard" };
	static const int rows[] = { 300, 200 };
	struct fixture f;

	(void)state;
	fixture_init(&f, 256, 400, 2, rows, 20.0f, 15);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct quant_config qc;
		struct site_result res;

		quant_config_default(&qc);
		qc.act.bits = 0;
		evaluate(&f, specs[i], &qc, NULL, &res);
		assert_true(isinf(res.predicted.act_db) && res.predicted.act_db > 0);
		assert_true(isinf(res.factorised.act_db) && res.factorised.act_db > 0);
		assert_true(isinf(res.measured.act_db) && res.measured.act_db > 0);
		assert_true(res.predicted.total_db == res.predicted.weight_db);
		assert_true(isfinite(res.measured.weight_db));
		rel_close(res.measured.total_db, res.measured.weight_db, 1e-4,
			  "total and weight-only SQNR without activation quantization");

		quant_config_default(&qc);
		qc.weight.bits = 0;
		evaluate(&f, specs[i], &qc, NULL, &res);
		assert_true(isinf(res.predicted.weight_db) && res.predicted.weight_db > 0);
		assert_true(isinf(res.factorised.weight_db) && res.factorised.weight_db > 0);
		assert_true(isinf(res.measured.weight_db) && res.measured.weight_db > 0);
		assert_true(res.predicted.total_db == res.predicted.act_db);
		assert_true(isfinite(res.measured.act_db));
		rel_close(res.measured.total_db, res.measured.act_db, 1e-4,
			  "total and activation-only SQNR without weight quantization");
	}
	fixture_free(&f);
}

/* Without a sample, a transform leaves the activation noise unknown: the predictions that
 * need it are NaN and flagged, never +Inf. */
static void
no_sample_prediction_is_unknown(void **state)
{
	struct fixture f;
	struct quant_config qc;
	struct site_result res;
	int saved;

	fixture_init(&f, 96, 300, 2, two_layers, 20.0f, 11);
	saved = f.stats.n_sample;
	f.stats.n_sample = 0;
	quant_config_default(&qc);
	evaluate(&f, "hadamard", &qc, NULL, &res);
	assert_true(res.flags & METRICS_FLAG_NO_SAMPLE);
	assert_true(isnan(res.predicted.act_db));
	assert_true(isnan(res.predicted.total_db));
	assert_true(isfinite(res.predicted.weight_db));
	assert_true(isnan(res.measured.total_db));
	f.stats.n_sample = saved;
	fixture_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(alignment_matches_loops),
		cmocka_unit_test(alignment_unchanged_by_rotations),
		cmocka_unit_test(cat_block_reaches_best_k),
		cmocka_unit_test(cat_full_reaches_best),
		cmocka_unit_test(cat1_reaches_best_1),
		cmocka_unit_test(random_invertible_never_beats_best),
		cmocka_unit_test(isotropic_alignment_is_one_over_d),
		cmocka_unit_test(concentration_floors),
		cmocka_unit_test(concentration_scale_invariant),
		cmocka_unit_test(six_db_per_bit_measured),
		cmocka_unit_test(predicted_matches_measured_gaussian),
		cmocka_unit_test(predicted_counts_clipping),
		cmocka_unit_test(factorisation_equals_prediction),
		cmocka_unit_test(gptq_measured_not_worse_than_rtn),
		cmocka_unit_test(nonfinite_input_flagged),
		cmocka_unit_test(degenerate_data_flagged),
		cmocka_unit_test(full_optimum_skipped_above_limit),
		cmocka_unit_test(invariants_reuse_matches_fresh),
		cmocka_unit_test(threads_and_scratch_keep_results),
		cmocka_unit_test(measured_sqnr_matches_loops),
		cmocka_unit_test(skipped_parts_keep_total),
		cmocka_unit_test(diagonal_cache_evicts_oldest),
		cmocka_unit_test(no_sample_prediction_is_unknown),
		cmocka_unit_test(unquantized_side_adds_no_noise),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
