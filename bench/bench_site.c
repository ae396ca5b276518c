/* Times site evaluations (transform build plus all metrics) on synthetic data and
 * reports each as a multiple of the single sgemm that measured SQNR cannot avoid: the
 * sample (n x d) times W^T (d x m). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/metrics.h"
#include "catscope/progress.h"
#include "catscope/transform.h"

struct bench_site {
	struct site_stats stats;
	struct site_layers layers;
	float *weight;
};

/* Tokens with a few outlier channels and a shared factor; Sx from the tokens plus a
 * small isotropic part so that it is positive definite although n < d. */
static void
bench_site_init(struct bench_site *b, int d, int m, int n)
{
	uint64_t rng = 1234;
	double *xd;

	memset(b, 0, sizeof(*b));
	b->stats.dim = d;
	b->stats.n_sample = n;
	b->stats.n_tokens = n;
	b->stats.sample = alloc_array((size_t)n * d, sizeof(float));
	b->stats.second_moment = alloc_array((size_t)d * d, sizeof(double));
	b->stats.mean = alloc_zeroed(d, sizeof(double));
	b->stats.absmax = alloc_zeroed(d, sizeof(float));
	for (int t = 0; t < n; t++) {
		float shared = (float)linalg_rng_normal(&rng);

		for (int i = 0; i < d; i++) {
			float v = (float)linalg_rng_normal(&rng) + 0.3f * shared;

			if (i % 301 == 7)
				v *= 30;
			b->stats.sample[(int64_t)t * d + i] = v;
		}
	}
	xd = alloc_array((size_t)n * d, sizeof(*xd));
	for (int64_t i = 0; i < (int64_t)n * d; i++)
		xd[i] = b->stats.sample[i];
	linalg_dsyrk_t(d, n, 1.0 / n, xd, d, 0.0, b->stats.second_moment, d);
	free(xd);
	for (int64_t i = 0; i < d; i++)
		b->stats.second_moment[i * d + i] += 0.1;
	for (int t = 0; t < n; t++) {
		float amax = 0, lo = 0, hi = 0;

		for (int i = 0; i < d; i++) {
			float v = b->stats.sample[(int64_t)t * d + i];

			b->stats.mean_sq_norm += (double)v * v / n;
			amax = fmaxf(amax, fabsf(v));
			lo = fminf(lo, v);
			hi = fmaxf(hi, v);
			b->stats.absmax[i] = fmaxf(b->stats.absmax[i], fabsf(v));
		}
		b->stats.mean_sq_range_sym += 4.0 * amax * amax / n;
		b->stats.mean_sq_range_asym += ((double)hi - lo) * ((double)hi - lo) / n;
	}
	b->weight = alloc_array((size_t)m * d, sizeof(float));
	for (int64_t i = 0; i < (int64_t)m * d; i++)
		b->weight[i] = (float)linalg_rng_normal(&rng) * 0.02f;
	b->layers.count = 1;
	b->layers.layer[0] = (struct site_layer){ .name = "bench", .rows = m, .weight = b->weight };
}

static void
bench_site_free(struct bench_site *b)
{
	free(b->stats.sample);
	free(b->stats.second_moment);
	free(b->stats.mean);
	free(b->stats.absmax);
	free(b->weight);
}

/* Best of three runs of the reference product, in seconds. */
static double
time_reference_sgemm(const struct bench_site *b, int m)
{
	int d = b->stats.dim, n = b->stats.n_sample;
	float *y = alloc_array((size_t)n * m, sizeof(*y));
	double best = INFINITY;

	for (int rep = 0; rep < 3; rep++) {
		double t0 = progress_now();

		linalg_sgemm(false, true, n, m, d, 1.0f, b->stats.sample, d, b->weight, d, 0.0f, y, m);
		best = fmin(best, progress_now() - t0);
	}
	free(y);
	return best;
}

/* Best of reps: seconds of the transform build (build) and of one evaluation with the
 * transform built (eval). */
static void
time_evaluation(struct bench_site *b, const char *text, const struct quant_config *qc,
		struct engine_options *opt, int reps, struct site_result *res, double *build,
		double *eval)
{
	struct transform_spec spec;
	struct error err;

	*build = *eval = INFINITY;
	transform_spec_parse(text, &spec, NULL);
	for (int rep = 0; rep < reps; rep++) {
		struct transform t;
		double t0 = progress_now(), t1;

		if (transform_build(&spec, &b->stats, &b->layers, &t, &err) < 0) {
			fprintf(stderr, "bench_site: %s: %s\n", text, err.message);
			exit(1);
		}
		t1 = progress_now();
		if (engine_evaluate_transform(&b->stats, &b->layers, &t, qc, opt, res, &err) < 0) {
			fprintf(stderr, "bench_site: %s: %s\n", text, err.message);
			exit(1);
		}
		*build = fmin(*build, t1 - t0);
		*eval = fmin(*eval, progress_now() - t1);
		transform_free(&t);
	}
}

/* Drops the kept diagonals of T Sx T^T, so that the next switch computes its own. */
static void
forget_diagonals(struct engine_invariants *inv)
{
	for (int i = 0; i < ENGINE_DIAGONALS_KEPT; i++) {
		free(inv->diagonal[i].diag);
		inv->diagonal[i].diag = NULL;
	}
}

static int
run(int d, int m, int n, int full_limit)
{
	static const char *const specs[] = { "none", "hadamard", "cat:128" };
	struct bench_site b;
	struct quant_config qc;
	struct engine_options opt;
	struct site_result res;
	struct engine_invariants invariants = { 0 };
	struct engine_scratch scratch = { 0 };
	double ref, build, eval;
	char full[32];

	bench_site_init(&b, d, m, n);
	ref = time_reference_sgemm(&b, m);
	quant_config_default(&qc);
	engine_options_default(&opt);
	opt.full_limit = full_limit;

	printf("site d=%d m=%d n=%d W4A4%s\n", d, m, n,
	       d > full_limit ? " (full optimum A* skipped)" : " (with full optimum A*)");
	printf("  reference sgemm %8.3f s  %6.1f GFLOP/s\n", ref, 2.0 * n * d * m / ref * 1e-9);
	time_evaluation(&b, "cat:128", &qc, &opt, 1, &res, &build, &eval);
	printf("  first evaluation with cat:128: build %.3f s + metrics %.3f s = %.2f x sgemm\n",
	       build, eval, (build + eval) / ref);

	/* The explorer's cases, with what no setting changes kept from a first evaluation:
	 * - quantizer change: the same transform again;
	 * - switch to a kept transform: from another transform to one built before, whose
	 *   diagonal of T Sx T^T is kept too (the explorer keeps recent transforms and
	 *   prebuilds CAT and the Hadamard diagonal while idle);
	 * - first switch: the transform built and its diagonal computed afresh.
	 * The table needs the total SQNR only, and the measured weight-only and
	 * activation-only SQNRs follow in the background. The explorer's worker reuses
	 * its buffers from one evaluation to the next. Best of two rounds. */
	opt.invariants = &invariants;
	opt.scratch = &scratch;
	time_evaluation(&b, "none", &qc, &opt, 1, &res, &build, &eval);
	printf("  again, in multiples of the sgemm (the target is below 2):\n");
	printf("    transform   quantizer change   switch to kept   first switch   build   "
	       "with parts\n");
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		const char *other = i == 0 ? specs[1] : specs[0];
		double requant = INFINITY, switch_back = INFINITY, first = INFINITY, built = INFINITY;
		double parts = INFINITY;

		for (int round = 0; round < 2; round++) {
			double t_build, t_eval, ignored;

			opt.measure_parts = false;
			forget_diagonals(&invariants);
			time_evaluation(&b, other, &qc, &opt, 1, &res, &ignored, &ignored);
			time_evaluation(&b, specs[i], &qc, &opt, 1, &res, &t_build, &t_eval);
			first = fmin(first, t_build + t_eval);
			built = fmin(built, t_build);
			time_evaluation(&b, specs[i], &qc, &opt, 1, &res, &t_build, &t_eval);
			requant = fmin(requant, t_eval);
			time_evaluation(&b, other, &qc, &opt, 1, &res, &ignored, &ignored);
			time_evaluation(&b, specs[i], &qc, &opt, 1, &res, &t_build, &t_eval);
			switch_back = fmin(switch_back, t_eval);
			opt.measure_parts = true;
			time_evaluation(&b, specs[i], &qc, &opt, 1, &res, &t_build, &t_eval);
			parts = fmin(parts, t_eval);
		}
		printf("    %-9s %18.2f %16.2f %14.2f %7.2f %12.2f\n", specs[i], requant / ref,
		       switch_back / ref, first / ref, built / ref, parts / ref);
	}
	snprintf(full, sizeof(full), isnan(res.best_full) ? "skipped" : "%.3g", res.best_full);
	printf("  cat:128: A %.3g -> %.3g (A*_128 %.3g, A* %s), SQNR predicted %.2f dB, "
	       "measured %.2f dB\n", res.alignment_raw, res.alignment, res.best_k, full,
	       res.predicted.total_db, res.measured.total_db);
	fflush(stdout);
	engine_invariants_release(&invariants);
	engine_scratch_release(&scratch);
	bench_site_free(&b);
	return 0;
}

int
main(int argc, char **argv)
{
	/* bench_site D M N FULL_LIMIT times one shape only, for profiling. */
	if (argc == 5)
		return run(atoi(argv[1]), atoi(argv[2]), atoi(argv[3]), atoi(argv[4])) < 0;
	if (run(4096, 4096, 1024, 4096) < 0)
		return 1;
	if (run(4096, 4096, 1024, 0) < 0)
		return 1;
	if (run(14336, 4096, 1024, 4096) < 0)
		return 1;
	return 0;
}
