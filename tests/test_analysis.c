/* Tests of the analysis state on the real model: the background worker, which first
 * skips the measured parts and keeps outputs, diagonals and transforms between
 * evaluations, must store exactly what a fresh synchronous computation stores. */
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
#include <time.h>

#include "catscope/alloc.h"
#include "catscope/analysis.h"
#include "catscope/linalg.h"
#include "catscope/model.h"
#include "catscope/testutil.h"
#include "site_fixture.h"

#define SAMPLE_TOKENS 96

static struct model *model;

/* Gaussian statistics per site, built on first use and kept for the model's life. */
struct synthetic_stats {
	struct site_stats *stats;
	int n_sites;
};

static const struct site_stats *
synthetic_site_stats(void *ctx, int block, enum site_kind kind, struct error *err)
{
	struct synthetic_stats *s = ctx;
	struct site_stats *st = &s->stats[analysis_site_index(block, kind)];
	const struct model_config *c = &model->config;
	uint64_t rng = 1000 + (uint64_t)analysis_site_index(block, kind);
	int d = kind == SITE_FFN_DOWN ? c->hidden_dim
		: kind == SITE_ATTN_OUT ? c->n_heads * c->head_dim : c->dim;

	if (st->second_moment != NULL)
		return st;
	st->dim = d;
	st->n_sample = SAMPLE_TOKENS;
	st->second_moment = alloc_array((size_t)d * d, sizeof(double));
	st->mean = alloc_array(d, sizeof(double));
	st->absmax = alloc_array(d, sizeof(float));
	st->sample = alloc_array((size_t)SAMPLE_TOKENS * d, sizeof(float));
	for (int64_t i = 0; i < (int64_t)SAMPLE_TOKENS * d; i++)
		st->sample[i] = (float)linalg_rng_normal(&rng) * (i % d == 3 ? 12.0f : 1.0f);
	fixture_stats_from_sample(st);
	return st;
}

/* An analysis of the real model whose statistics come from stats, filled on demand. */
static struct analysis *
new_synthetic_analysis(struct synthetic_stats *stats)
{
	struct analysis *a = analysis_new(model, synthetic_site_stats, stats);

	stats->n_sites = a->n_sites;
	stats->stats = alloc_zeroed(a->n_sites, sizeof(*stats->stats));
	return a;
}

static void
synthetic_stats_free(struct synthetic_stats *s)
{
	for (int i = 0; i < s->n_sites; i++) {
		free(s->stats[i].second_moment);
		free(s->stats[i].mean);
		free(s->stats[i].absmax);
		free(s->stats[i].sample);
	}
	free(s->stats);
}

static void
set_transforms(struct analysis *a, const char *const *specs)
{
	for (int i = 0; i < a->n_sites; i++) {
		struct transform_spec spec;

		assert_int_equal(transform_spec_parse(specs[i % 4], &spec, NULL), 0);
		analysis_set_transform(a, i, &spec);
	}
}

/* Waits until no site is stale or running and every result has its measured parts. */
static void
wait_for_worker(struct analysis *a)
{
	for (int tries = 0; tries < 6000; tries++) {
		bool done = analysis_pending(a) == 0;

		pthread_mutex_lock(&a->lock);
		for (int i = 0; i < a->n_sites && done; i++)
			done = a->sites[i].state == ANALYSIS_DONE &&
			       !(a->sites[i].result.flags & METRICS_FLAG_PARTS_SKIPPED);
		pthread_mutex_unlock(&a->lock);
		if (done)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	fail_msg("the analysis worker did not finish within 60 s");
}

static void
assert_same_results(struct analysis *worker, struct analysis *fresh)
{
	for (int i = 0; i < fresh->n_sites; i++) {
		const struct site_result *x = &worker->sites[i].result;
		const struct site_result *y = &fresh->sites[i].result;

		assert_int_equal(worker->sites[i].state, ANALYSIS_DONE);
		assert_int_equal(fresh->sites[i].state, ANALYSIS_DONE);
		assert_true(isfinite(y->measured.total_db));
		assert_true(x->measured.total_db == y->measured.total_db);
		assert_true(x->measured.weight_db == y->measured.weight_db);
		assert_true(x->measured.act_db == y->measured.act_db);
		assert_true(x->predicted.total_db == y->predicted.total_db);
		assert_true(x->alignment == y->alignment);
		assert_true(x->best_k == y->best_k);
		assert_int_equal(x->flags, y->flags);
	}
}

static void
worker_matches_fresh_computation(void **state)
{
	static const char *const first[] = { "cat", "hadamard", "none", "smooth" };
	static const char *const second[] = { "hadamard", "cat", "cat", "random:3" };
	struct synthetic_stats stats_a = { 0 }, stats_b = { 0 };
	struct analysis *a, *b;
	struct quant_config qc;
	struct error err;

	a = new_synthetic_analysis(&stats_a);
	set_transforms(a, first);
	analysis_worker_start(a);
	wait_for_worker(a);

	b = new_synthetic_analysis(&stats_b);
	set_transforms(b, first);
	assert_int_equal(analysis_compute_all(b, &err), 0);
	assert_same_results(a, b);

	/* A change of quantizer and of every site's transform: the worker now reuses what
	 * it kept (outputs, diagonals, transforms, the prebuilt CAT) and must still agree
	 * with an analysis that starts from nothing. */
	quant_config_default(&qc);
	qc.weight.bits = 3;
	qc.act.bits = 6;
	analysis_set_quant(a, &qc);
	set_transforms(a, second);
	wait_for_worker(a);
	analysis_free(b);
	synthetic_stats_free(&stats_b);
	memset(&stats_b, 0, sizeof(stats_b));
	b = new_synthetic_analysis(&stats_b);
	analysis_set_quant(b, &qc);
	set_transforms(b, second);
	assert_int_equal(analysis_compute_all(b, &err), 0);
	assert_same_results(a, b);

	analysis_free(a);
	analysis_free(b);
	synthetic_stats_free(&stats_a);
	synthetic_stats_free(&stats_b);
}

/* Waits until the idle worker keeps the diagonal of T Sx T^T for the full-width
 * Hadamard at every site. */
static void
wait_for_hadamard_diagonals(struct analysis *a)
{
	struct transform_spec hadamard;
	int missing = -1;

	assert_int_equal(transform_spec_parse("hadamard", &hadamard, NULL), 0);
	for (int tries = 0; tries < 6000; tries++) {
		missing = -1;
		pthread_mutex_lock(&a->lock);
		for (int i = 0; i < a->n_sites && missing < 0; i++)
			if (engine_invariants_diagonal(&a->sites[i].invariants, &hadamard,
						       a->sites[i].result.dim) == NULL)
				missing = i;
		pthread_mutex_unlock(&a->lock);
		if (missing < 0)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	fail_msg("the idle worker kept no Hadamard diagonal for site %d within 60 s", missing);
}

/* Sites that already use CAT get the Hadamard diagonal prebuilt too, and a switch to
 * the Hadamard that reuses it stores what a fresh computation stores. One site per
 * block switches, which keeps each wait within its 60 s under ThreadSanitizer. */
static void
prebuild_covers_sites_on_cat(void **state)
{
	static const char *const cat[] = { "cat", "none", "none", "none" };
	static const char *const hadamard[] = { "hadamard", "none", "none", "none" };
	struct synthetic_stats stats_a = { 0 }, stats_b = { 0 };
	struct analysis *a, *b;
	struct error err;

	(void)state;
	a = new_synthetic_analysis(&stats_a);
	set_transforms(a, cat);
	analysis_worker_start(a);
	wait_for_worker(a);
	wait_for_hadamard_diagonals(a);

	set_transforms(a, hadamard);
	wait_for_worker(a);
	b = new_synthetic_analysis(&stats_b);
	set_transforms(b, hadamard);
	assert_int_equal(analysis_compute_all(b, &err), 0);
	assert_same_results(a, b);

	analysis_free(a);
	analysis_free(b);
	synthetic_stats_free(&stats_a);
	synthetic_stats_free(&stats_b);
}

static int
load_model(void **state)
{
	struct error err;

	model = model_load(testutil_data_path("stories260K.gguf"), &err);
	if (model == NULL) {
		fprintf(stderr, "test_analysis: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int
free_model(void **state)
{
	model_free(model);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(worker_matches_fresh_computation),
		cmocka_unit_test(prebuild_covers_sites_on_cat),
	};

	return cmocka_run_group_tests(tests, load_model, free_model);
}
