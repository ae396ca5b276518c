/* The analysis state and its background worker. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/analysis.h"
#include "catscope/log.h"

int
analysis_site_index(int block, enum site_kind kind)
{
	return block * SITE_KIND_COUNT + (int)kind;
}

static const enum model_linear analysis_site_linears[SITE_KIND_COUNT][SITE_LAYERS_MAX + 1] = {
	[SITE_ATTN_IN] = { LINEAR_Q, LINEAR_K, LINEAR_V, LINEAR_COUNT },
	[SITE_ATTN_OUT] = { LINEAR_O, LINEAR_COUNT },
	[SITE_FFN_IN] = { LINEAR_GATE, LINEAR_UP, LINEAR_COUNT },
	[SITE_FFN_DOWN] = { LINEAR_DOWN, LINEAR_COUNT },
};

void
analysis_site_layers(const struct analysis *a, int index, struct site_layers *out)
{
	const struct analysis_site *site = &a->sites[index];
	const struct model_block *b = &a->model->blocks[site->block];

	memset(out, 0, sizeof(*out));
	for (int j = 0; analysis_site_linears[site->kind][j] != LINEAR_COUNT; j++) {
		enum model_linear linear = analysis_site_linears[site->kind][j];
		int rows, cols;

		model_linear_shape(&a->model->config, linear, &rows, &cols);
		out->layer[j].name = site->layer_names[j];
		out->layer[j].rows = rows;
		out->layer[j].weight = b->linear[linear];
		out->count = j + 1;
	}
}

struct analysis *
analysis_new(const struct model *model, analysis_stats_fn stats_fn, void *stats_ctx)
{
	struct analysis *a = alloc_zeroed(1, sizeof(*a));

	a->model = model;
	a->stats_fn = stats_fn;
	a->stats_ctx = stats_ctx;
	quant_config_default(&a->quant);
	a->n_sites = model->config.n_layers * SITE_KIND_COUNT;
	a->sites = alloc_zeroed((size_t)a->n_sites, sizeof(*a->sites));
	for (int i = 0; i < a->n_sites; i++) {
		struct analysis_site *s = &a->sites[i];

		s->block = i / SITE_KIND_COUNT;
		s->kind = (enum site_kind)(i % SITE_KIND_COUNT);
		s->spec.kind = TRANSFORM_NONE;
		s->spec.block = TRANSFORM_BLOCK_DEFAULT;
		s->spec.alpha = 0.5;
		s->spec.ridge = TRANSFORM_DEFAULT_RIDGE;
		s->state = ANALYSIS_STALE;
		for (int j = 0; analysis_site_linears[s->kind][j] != LINEAR_COUNT; j++)
			snprintf(s->layer_names[j], sizeof(s->layer_names[j]), "blk.%d.%s", s->block,
				 model_linear_name(analysis_site_linears[s->kind][j]));
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	return a;
}

void
analysis_free(struct analysis *a)
{
	if (a == NULL)
		return;
	analysis_worker_stop(a);
	for (int i = 0; i < a->n_sites; i++) {
		engine_invariants_release(&a->sites[i].invariants);
		for (int j = 0; j < ANALYSIS_TRANSFORMS_KEPT; j++)
			transform_free(&a->sites[i].transforms[j]);
	}
	for (int i = 0; i < a->n_isotropic; i++) {
		free(a->isotropic[i]->second_moment);
		free(a->isotropic[i]->mean);
		free(a->isotropic[i]->absmax);
		free(a->isotropic[i]);
	}
	free(a->isotropic);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->wake);
	free(a->sites);
	free(a);
}

/* Statistics of isotropic unit-variance activations of width d: what the analysis
 * assumes when there is no calibration. The worker and a comparison may ask at once,
 * so the list is extended under the lock, and each entry stays where it was
 * allocated while other threads read it. The caller does not hold the lock. */
static const struct site_stats *
analysis_isotropic_stats(struct analysis *a, int dim)
{
	struct site_stats *s;

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n_isotropic; i++) {
		if (a->isotropic[i]->dim == dim) {
			s = a->isotropic[i];
			pthread_mutex_unlock(&a->lock);
			return s;
		}
	}
	a->isotropic = alloc_resize(a->isotropic, (size_t)a->n_isotropic + 1, sizeof(*a->isotropic));
	s = alloc_zeroed(1, sizeof(*s));
	a->isotropic[a->n_isotropic++] = s;
	s->dim = dim;
	s->n_tokens = 1;
	s->second_moment = alloc_zeroed((size_t)dim * dim, sizeof(double));
	s->mean = alloc_zeroed((size_t)dim, sizeof(double));
	s->absmax = alloc_array((size_t)dim, sizeof(float));
	for (int i = 0; i < dim; i++) {
		s->second_moment[(size_t)i * dim + i] = 1.0;
		s->absmax[i] = 1.0f;
	}
	s->mean_sq_norm = dim;
	/* A Gaussian token's expected squared range, roughly (2 sqrt(2 ln d))^2. */
	s->mean_sq_range_sym = 8.0 * log((double)dim > 2 ? dim : 2);
	s->mean_sq_range_asym = s->mean_sq_range_sym;
	pthread_mutex_unlock(&a->lock);
	return s;
}

static const struct site_stats *
analysis_stats(struct analysis *a, const struct analysis_site *site, int dim, struct error *err)
{
	if (a->stats_fn == NULL)
		return analysis_isotropic_stats(a, dim);
	return a->stats_fn(a->stats_ctx, site->block, site->kind, err);
}

static int
analysis_site_dim(const struct analysis *a, enum site_kind kind)
{
	const struct model_config *c = &a->model->config;

	if (kind == SITE_ATTN_OUT)
		return c->n_heads * c->head_dim;
	return kind == SITE_FFN_DOWN ? c->hidden_dim : c->dim;
}

static size_t
analysis_site_cache_bytes(const struct analysis_site *s)
{
	size_t bytes = engine_invariants_bytes(&s->invariants);

	for (int j = 0; j < ANALYSIS_TRANSFORMS_KEPT; j++)
		if (s->transform_used[j] != 0)
			bytes += transform_heap_bytes(&s->transforms[j]);
	return bytes;
}

/* Frees the kept outputs and transforms of the least recently evaluated sites other
 * than keep until the total fits ANALYSIS_CACHE_BUDGET. The caller holds the lock. */
static void
analysis_trim_caches(struct analysis *a, int keep)
{
	size_t total = 0;

	for (int i = 0; i < a->n_sites; i++)
		total += analysis_site_cache_bytes(&a->sites[i]);
	while (total > ANALYSIS_CACHE_BUDGET) {
		struct analysis_site *oldest = NULL;

		for (int i = 0; i < a->n_sites; i++) {
			struct analysis_site *s = &a->sites[i];

			if (i == keep || analysis_site_cache_bytes(s) == 0)
				continue;
			if (oldest == NULL || s->last_used < oldest->last_used)
				oldest = s;
		}
		if (oldest == NULL)
			return;
		total -= analysis_site_cache_bytes(oldest);
		engine_invariants_release(&oldest->invariants);
		for (int j = 0; j < ANALYSIS_TRANSFORMS_KEPT; j++) {
			transform_free(&oldest->transforms[j]);
			oldest->transform_used[j] = 0;
		}
	}
}

/* Takes the site's kept transform for spec out of the cache, or builds it. Taking it
 * out lets two threads evaluate the site at once without sharing buffers. */
static int
analysis_take_transform(struct analysis *a, struct analysis_site *site,
			const struct transform_spec *spec, const struct site_stats *stats,
			const struct site_layers *layers, struct transform *t, struct error *err)
{
	pthread_mutex_lock(&a->lock);
	for (int j = 0; j < ANALYSIS_TRANSFORMS_KEPT; j++) {
		if (site->transform_used[j] != 0 && transform_spec_equal(&site->transforms[j].spec, spec)) {
			*t = site->transforms[j];
			memset(&site->transforms[j], 0, sizeof(site->transforms[j]));
			site->transform_used[j] = 0;
			pthread_mutex_unlock(&a->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return transform_build(spec, stats, layers, t, err);
}

/* Puts t back into the site's cache in place of the least recently used one (or of an
 * equal one another thread put back meanwhile). The caller holds the lock. */
static void
analysis_keep_transform(struct analysis *a, struct analysis_site *site, struct transform *t)
{
	int slot = 0;

	for (int j = 0; j < ANALYSIS_TRANSFORMS_KEPT; j++) {
		if (site->transform_used[j] != 0 && transform_spec_equal(&site->transforms[j].spec, &t->spec)) {
			slot = j;
			break;
		}
		if (site->transform_used[j] < site->transform_used[slot])
			slot = j;
	}
	transform_free(&site->transforms[slot]);
	site->transforms[slot] = *t;
	site->transform_used[slot] = a->tick;
}

/* Evaluates with the given settings; the caller holds no lock. */
static int
analysis_run(struct analysis *a, int index, const struct transform_spec *spec,
	     const struct quant_config *qc, bool parts, struct engine_scratch *scratch,
	     struct site_result *out, struct error *err)
{
	struct analysis_site *site = &a->sites[index];
	struct site_layers layers;
	const struct site_stats *stats;
	struct engine_options options;
	struct engine_invariants invariants;
	struct transform t;
	int rc;

	analysis_site_layers(a, index, &layers);
	stats = analysis_stats(a, site, analysis_site_dim(a, site->kind), err);
	if (stats == NULL)
		return -1;
	if (analysis_take_transform(a, site, spec, stats, &layers, &t, err) != 0)
		return -1;
	/* The worker and a comparison may evaluate one site at once. The first takes the
	 * kept outputs and diagonal, and the other computes its own. Whichever copy is stored last is as
	 * valid as the other. */
	pthread_mutex_lock(&a->lock);
	invariants = site->invariants;
	for (int l = 0; l < SITE_LAYERS_MAX; l++)
		site->invariants.output[l] = NULL;
	site->invariants.output_tokens = 0;
	for (int j = 0; j < ENGINE_DIAGONALS_KEPT; j++)
		site->invariants.diagonal[j].diag = NULL;
	pthread_mutex_unlock(&a->lock);
	engine_options_default(&options);
	options.invariants = &invariants;
	options.measure_parts = parts;
	options.scratch = scratch;
	rc = engine_evaluate_transform(stats, &layers, &t, qc, &options, out, err);
	pthread_mutex_lock(&a->lock);
	engine_invariants_release(&site->invariants);
	site->invariants = invariants;
	site->last_used = ++a->tick;
	analysis_keep_transform(a, site, &t);
	analysis_trim_caches(a, index);
	pthread_mutex_unlock(&a->lock);
	if (rc != 0)
		return -1;
	if (a->stats_fn == NULL)
		out->flags |= ANALYSIS_NO_CALIBRATION;
	return 0;
}

int
analysis_evaluate_with(struct analysis *a, int index, const struct transform_spec *spec,
		       struct site_result *out, struct error *err)
{
	struct quant_config qc;

	pthread_mutex_lock(&a->lock);
	qc = a->quant;
	pthread_mutex_unlock(&a->lock);
	return analysis_run(a, index, spec, &qc, true, NULL, out, err);
}

/* Computes a site from a snapshot of its settings and stores the result only if
 * nothing changed meanwhile. A refinement recomputes a finished site with every
 * measured SQNR and leaves it shown as finished while it runs. */
static int
analysis_compute_snapshot(struct analysis *a, int index, bool parts, bool refine,
			  struct engine_scratch *scratch, struct error *err)
{
	struct analysis_site *site = &a->sites[index];
	struct transform_spec spec;
	struct quant_config qc;
	struct site_result result;
	unsigned version;
	int rc;

	pthread_mutex_lock(&a->lock);
	spec = site->spec;
	qc = a->quant;
	version = site->version;
	if (!refine)
		site->state = ANALYSIS_RUNNING;
	pthread_mutex_unlock(&a->lock);

	error_clear(err);
	rc = analysis_run(a, index, &spec, &qc, parts, scratch, &result, err);

	pthread_mutex_lock(&a->lock);
	if (site->version == version) {
		if (rc == 0) {
			site->result = result;
			site->state = ANALYSIS_DONE;
		} else {
			snprintf(site->error, sizeof(site->error), "%s", err->message);
			site->state = ANALYSIS_FAILED;
		}
		a->completed++;
	} else if (!refine) {
		site->state = ANALYSIS_STALE;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int
analysis_compute(struct analysis *a, int index, struct error *err)
{
	return analysis_compute_snapshot(a, index, true, false, NULL, err);
}

int
analysis_compute_all(struct analysis *a, struct error *err)
{
	struct engine_scratch scratch = { 0 };
	struct error site_err;
	int rc = 0;

	for (int i = 0; i < a->n_sites; i++) {
		if (a->sites[i].state == ANALYSIS_DONE)
			continue;
		if (analysis_compute_snapshot(a, i, true, false, &scratch, &site_err) != 0 &&
		    rc == 0) {
			rc = error_set(err, "site blk.%d.%s: %s", a->sites[i].block,
				       site_kind_name(a->sites[i].kind), site_err.message);
		}
	}
	engine_scratch_release(&scratch);
	return rc;
}

void
analysis_set_transform(struct analysis *a, int index, const struct transform_spec *spec)
{
	pthread_mutex_lock(&a->lock);
	a->sites[index].spec = *spec;
	a->sites[index].version++;
	a->sites[index].state = ANALYSIS_STALE;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
}

void
analysis_set_quant(struct analysis *a, const struct quant_config *qc)
{
	pthread_mutex_lock(&a->lock);
	a->quant = *qc;
	for (int i = 0; i < a->n_sites; i++) {
		a->sites[i].version++;
		a->sites[i].state = ANALYSIS_STALE;
	}
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
}

int
analysis_pending(struct analysis *a)
{
	int n = 0;

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n_sites; i++)
		n += a->sites[i].state == ANALYSIS_STALE || a->sites[i].state == ANALYSIS_RUNNING;
	pthread_mutex_unlock(&a->lock);
	return n;
}

/* Computes the diagonal of T Sx T^T for t and keeps it in the site's invariants. The
 * caller holds the lock, which is released while computing. */
static void
analysis_prebuild_diagonal(struct analysis *a, struct analysis_site *site,
			   const struct site_stats *stats, const struct transform *t)
{
	double *diag;

	if (engine_invariants_diagonal(&site->invariants, &t->spec, stats->dim) != NULL)
		return;
	pthread_mutex_unlock(&a->lock);
	diag = alloc_array(stats->dim, sizeof(*diag));
	transform_conjugate_diagonal(t, stats->second_moment, diag);
	pthread_mutex_lock(&a->lock);
	engine_invariants_keep_diagonal(&site->invariants, &t->spec, stats->dim, diag);
}

/* Prepares the first finished site not yet visited for a switch of transform: keeps
 * the diagonal of T Sx T^T for the full-width Hadamard and, unless one is kept, builds
 * the default CAT transform with its diagonal. A switch to either in the explorer then
 * skips the eigendecompositions and the diagonal. Runs only when the worker is idle,
 * and builds CAT only while the caches have room for it. Returns false when there is
 * nothing left to build. The caller holds the lock, which is released during the build. */
static bool
analysis_prebuild_next(struct analysis *a)
{
	struct transform_spec spec, hadamard_spec;
	struct analysis_site *site = NULL;
	struct site_layers layers;
	const struct site_stats *stats;
	struct transform t, hadamard;
	struct error err;
	size_t total = 0;
	int index = -1, dim;
	bool build_cat = true;

	transform_spec_parse("cat", &spec, NULL);
	transform_spec_parse("hadamard", &hadamard_spec, NULL);
	for (int i = 0; i < a->n_sites; i++)
		total += analysis_site_cache_bytes(&a->sites[i]);
	for (int i = 0; i < a->n_sites && index < 0; i++) {
		struct analysis_site *s = &a->sites[i];

		if (s->state != ANALYSIS_DONE || s->prebuilt)
			continue;
		s->prebuilt = true;
		index = i;
		/* A site whose CAT transform is kept needs no build, but still needs
		 * the Hadamard diagonal. */
		for (int j = 0; j < ANALYSIS_TRANSFORMS_KEPT; j++)
			if (s->transform_used[j] != 0 && transform_spec_equal(&s->transforms[j].spec, &spec))
				build_cat = false;
	}
	if (index < 0)
		return false;
	site = &a->sites[index];
	dim = analysis_site_dim(a, site->kind);
	/* Two float copies of d x k blocks. */
	if (total + 2 * sizeof(float) * (size_t)dim * transform_block_size(&spec, dim) >
	    ANALYSIS_CACHE_BUDGET)
		build_cat = false;
	pthread_mutex_unlock(&a->lock);
	analysis_site_layers(a, index, &layers);
	stats = analysis_stats(a, site, dim, &err);
	if (stats == NULL || stats->second_moment == NULL) {
		pthread_mutex_lock(&a->lock);
		return true;
	}
	if (transform_build(&hadamard_spec, stats, NULL, &hadamard, &err) == 0) {
		pthread_mutex_lock(&a->lock);
		analysis_prebuild_diagonal(a, site, stats, &hadamard);
		pthread_mutex_unlock(&a->lock);
		transform_free(&hadamard);
	}
	if (build_cat && transform_build(&spec, stats, &layers, &t, &err) == 0) {
		pthread_mutex_lock(&a->lock);
		analysis_prebuild_diagonal(a, site, stats, &t);
		analysis_keep_transform(a, site, &t);
		return true;
	}
	pthread_mutex_lock(&a->lock);
	return true;
}

static void *
analysis_worker_main(void *arg)
{
	struct analysis *a = arg;
	struct error err;

	pthread_mutex_lock(&a->lock);
	while (!a->stopping) {
		int next = -1;
		bool refine = false;

		for (int i = 0; i < a->n_sites && next < 0; i++) {
			if (a->sites[i].state == ANALYSIS_STALE)
				next = i;
		}
		/* Stale sites first get the numbers the table shows; the measured parts
		 * follow once every site has them. */
		for (int i = 0; i < a->n_sites && next < 0; i++) {
			const struct analysis_site *s = &a->sites[i];

			if (s->state == ANALYSIS_DONE && (s->result.flags & METRICS_FLAG_PARTS_SKIPPED))
				next = i;
			refine = next >= 0;
		}
		if (next < 0) {
			/* Idle: the buffers are worth keeping only between evaluations. */
			engine_scratch_release(&a->worker_scratch);
			if (analysis_prebuild_next(a))
				continue;
			pthread_cond_wait(&a->wake, &a->lock);
			continue;
		}
		pthread_mutex_unlock(&a->lock);
		if (analysis_compute_snapshot(a, next, refine, refine, &a->worker_scratch,
					      &err) != 0)
			log_warn("site %d: %s", next, err.message);
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	engine_scratch_release(&a->worker_scratch);
	return NULL;
}

void
analysis_worker_start(struct analysis *a)
{
	if (a->worker_running)
		return;
	a->stopping = false;
	if (pthread_create(&a->worker, NULL, analysis_worker_main, a) == 0)
		a->worker_running = true;
}

void
analysis_worker_stop(struct analysis *a)
{
	if (!a->worker_running)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->worker, NULL);
	a->worker_running = false;
}
