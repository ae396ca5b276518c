/* The comparison thread: evaluates every site without transform (the reference of
 * the gain column and the overview) and every transform of the site open in the
 * detail view, on a private analysis so that it never races the analysis worker.
 * The detail site goes first because the user is looking at it.
 *
 * NOTE: this thread and the analysis worker call BLAS at the same time. A threaded
 * OpenBLAS locks its shared buffers for that, but a single-threaded one needs
 * USE_LOCKING=1 (OpenBLAS 0.3.7 release notes). With the Debian pthreads build of
 * 0.3.21, ThreadSanitizer reports races only inside OpenBLAS, whose locks it
 * cannot see. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "tui_impl.h"

const char *const tui_transform_specs[TUI_TRANSFORM_COUNT] = {
	"none", "smooth", "hadamard", "cat1", "cat", "cat:full", "random",
};

int
tui_transform_index(const struct transform_spec *spec)
{
	char text[64], listed_text[64];

	/* Canonical strings compare equal exactly when the specs do, whatever fields
	 * a kind ignores (the block of none, say). */
	transform_spec_format(spec, text, sizeof(text));
	for (int k = 0; k < TUI_TRANSFORM_COUNT; k++) {
		struct transform_spec listed;
		struct error err;

		if (transform_spec_parse(tui_transform_specs[k], &listed, &err) != 0)
			continue;
		transform_spec_format(&listed, listed_text, sizeof(listed_text));
		if (strcmp(text, listed_text) == 0)
			return k;
	}
	return -1;
}

/* Column norms of the rows x dim weights of every layer of a site, summed in square. */
static void
compare_column_norms(const struct site_layers *layers, int dim, float *out)
{
	for (int i = 0; i < dim; i++) {
		double sum = 0;

		for (int l = 0; l < layers->count; l++) {
			for (int r = 0; r < layers->layer[l].rows; r++) {
				double w = layers->layer[l].weight[(size_t)r * dim + i];

				sum += w * w;
			}
		}
		out[i] = (float)sqrt(sum);
	}
}

static int
compare_site_dim(const struct analysis *a, int site)
{
	const struct model_config *mc = &a->model->config;
	enum site_kind kind = a->sites[site].kind;

	if (kind == SITE_ATTN_OUT)
		return mc->n_heads * mc->head_dim;
	return kind == SITE_FFN_DOWN ? mc->hidden_dim : mc->dim;
}

static void
profile_free(struct tui_profile *profile)
{
	free(profile->act_before);
	free(profile->act_after);
	free(profile->weight_before);
	free(profile->weight_after);
	memset(profile, 0, sizeof(*profile));
}

/* Column norms of the site's weights after the transform, W T^-1, on copies. */
static void
profile_moved_weights(const struct site_layers *layers, const struct transform *tr, int dim,
		      float *out)
{
	float *moved_w[SITE_LAYERS_MAX] = { NULL };
	struct site_layers moved = *layers;

	for (int l = 0; l < layers->count; l++) {
		size_t n = (size_t)layers->layer[l].rows * dim;

		moved_w[l] = alloc_array(n, sizeof(float));
		memcpy(moved_w[l], layers->layer[l].weight, n * sizeof(float));
		transform_apply_weights(tr, moved_w[l], layers->layer[l].rows);
		moved.layer[l].weight = moved_w[l];
	}
	compare_column_norms(&moved, dim, out);
	for (int l = 0; l < layers->count; l++)
		free(moved_w[l]);
}

/* Computes the channel profiles of a site before and after spec into out. The
 * activation rows and the transform need the calibration statistics. */
static void
profile_compute(struct analysis *p, int site, const struct transform_spec *spec,
		struct tui_profile *out)
{
	struct site_layers layers;
	const struct site_stats *stats = NULL;
	struct transform tr;
	struct error err;
	int dim = compare_site_dim(p, site);

	memset(out, 0, sizeof(*out));
	out->site = site;
	out->dim = dim;
	transform_spec_format(spec, out->spec, sizeof(out->spec));
	out->act_before = alloc_zeroed((size_t)dim, sizeof(float));
	out->act_after = alloc_zeroed((size_t)dim, sizeof(float));
	out->weight_before = alloc_zeroed((size_t)dim, sizeof(float));
	out->weight_after = alloc_zeroed((size_t)dim, sizeof(float));

	analysis_site_layers(p, site, &layers);
	compare_column_norms(&layers, dim, out->weight_before);
	if (p->stats_fn == NULL) {
		snprintf(out->note, sizeof(out->note),
			 "activation rows and the transformed weights need calibration (--calib CACHE)");
		return;
	}
	stats = p->stats_fn(p->stats_ctx, p->sites[site].block, p->sites[site].kind, &err);
	if (stats == NULL) {
		snprintf(out->note, sizeof(out->note), "statistics unavailable: %.120s", err.message);
		return;
	}
	out->has_act = true;
	for (int i = 0; i < dim; i++)
		out->act_before[i] = (float)sqrt(fmax(stats->second_moment[(size_t)i * dim + i], 0));

	memset(&tr, 0, sizeof(tr));
	if (transform_build(spec, stats, &layers, &tr, &err) != 0) {
		snprintf(out->note, sizeof(out->note), "transform %s failed: %.100s", out->spec,
			 err.message);
		return;
	}
	{
		double *diagonal = alloc_array((size_t)dim, sizeof(double));

		transform_conjugate_diagonal(&tr, stats->second_moment, diagonal);
		for (int i = 0; i < dim; i++)
			out->act_after[i] = (float)sqrt(fmax(diagonal[i], 0));
		free(diagonal);
	}
	profile_moved_weights(&layers, &tr, dim, out->weight_after);
	out->has_after = true;
	transform_free(&tr);
}

/* Picks the next job under c->lock: a detail transform first, then a reference.
 * Returns false when there is nothing to do. */
static bool
compare_next_job(struct tui_compare *c, int *site, int *transform)
{
	if (c->detail_site >= 0 && c->detail_generation == c->generation) {
		for (int k = 0; k < TUI_TRANSFORM_COUNT; k++) {
			if (c->detail_state[k] == 0) {
				*site = c->detail_site;
				*transform = k;
				return true;
			}
		}
	}
	for (int i = 0; i < c->priv->n_sites; i++) {
		if (!c->ref_valid[i] || c->ref_generation[i] != c->generation) {
			*site = i;
			*transform = -1;
			return true;
		}
	}
	return false;
}

static void *
compare_main(void *arg)
{
	struct tui *t = arg;
	struct tui_compare *c = &t->compare;
	struct error err;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		int site, k;
		unsigned generation;
		struct transform_spec spec;
		struct site_result result;
		int rc;

		if (c->detail_site >= 0 && c->profile_claimed != c->profile_wanted) {
			/* Profiles follow the site's current transform in the main analysis,
			 * and a newer request discards this one when it ends. */
			unsigned claim = c->profile_wanted;
			int s = c->detail_site;
			struct tui_profile fresh;

			c->profile_claimed = claim;
			pthread_mutex_lock(&t->a->lock);
			spec = t->a->sites[s].spec;
			pthread_mutex_unlock(&t->a->lock);
			pthread_mutex_unlock(&c->lock);
			profile_compute(c->priv, s, &spec, &fresh);
			pthread_mutex_lock(&c->lock);
			if (claim == c->profile_wanted) {
				profile_free(&c->profile);
				c->profile = fresh;
				c->profile_done = claim;
			} else {
				profile_free(&fresh);
			}
			continue;
		}
		if (!compare_next_job(c, &site, &k)) {
			pthread_cond_wait(&c->wake, &c->lock);
			continue;
		}
		generation = c->generation;
		if (k >= 0)
			c->detail_state[k] = 2; /* running */
		pthread_mutex_unlock(&c->lock);

		error_clear(&err);
		rc = transform_spec_parse(k >= 0 ? tui_transform_specs[k] : "none", &spec, &err);
		if (rc == 0)
			rc = analysis_evaluate_with(c->priv, site, &spec, &result, &err);

		pthread_mutex_lock(&c->lock);
		if (generation != c->generation)
			continue; /* the quantizer changed meanwhile: the result is void */
		if (k < 0) {
			if (rc == 0)
				c->reference[site] = result;
			else
				c->reference[site].measured.total_db = NAN;
			c->ref_valid[site] = true;
			c->ref_generation[site] = generation;
		} else if (site == c->detail_site) {
			c->detail[k] = result;
			c->detail_state[k] = rc == 0 ? 1 : -1;
			if (rc != 0)
				snprintf(c->detail_error[k], sizeof(c->detail_error[k]), "%s", err.message);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int
tui_compare_start(struct tui *t)
{
	struct tui_compare *c = &t->compare;
	int n = t->a->n_sites;

	memset(c, 0, sizeof(*c));
	c->priv = analysis_new(t->a->model, t->a->stats_fn, t->a->stats_ctx);
	pthread_mutex_lock(&t->a->lock);
	c->priv->quant = t->a->quant;
	pthread_mutex_unlock(&t->a->lock);
	c->reference = alloc_zeroed((size_t)n, sizeof(*c->reference));
	c->ref_generation = alloc_zeroed((size_t)n, sizeof(*c->ref_generation));
	c->ref_valid = alloc_zeroed((size_t)n, sizeof(*c->ref_valid));
	c->detail_site = -1;
	c->profile.site = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	if (pthread_create(&c->thread, NULL, compare_main, t) != 0)
		return -1;
	c->running = true;
	return 0;
}

void
tui_compare_stop(struct tui *t)
{
	struct tui_compare *c = &t->compare;

	if (c->running) {
		pthread_mutex_lock(&c->lock);
		c->stopping = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
		c->running = false;
	}
	analysis_free(c->priv);
	free(c->reference);
	free(c->ref_generation);
	free(c->ref_valid);
	profile_free(&c->profile);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->wake);
}

void
tui_compare_set_quant(struct tui *t, const struct quant_config *qc)
{
	struct tui_compare *c = &t->compare;

	pthread_mutex_lock(&c->lock);
	analysis_set_quant(c->priv, qc);
	c->generation++;
	c->detail_generation = c->generation;
	for (int k = 0; k < TUI_TRANSFORM_COUNT; k++)
		c->detail_state[k] = 0;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

void
tui_compare_request_detail(struct tui *t, int site)
{
	struct tui_compare *c = &t->compare;

	pthread_mutex_lock(&c->lock);
	if (c->detail_site != site || c->detail_generation != c->generation) {
		c->detail_site = site;
		c->detail_generation = c->generation;
		for (int k = 0; k < TUI_TRANSFORM_COUNT; k++)
			c->detail_state[k] = 0;
	}
	/* The site's transform may have changed: recompute its profiles. */
	c->profile_wanted++;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

int
tui_compare_pending(struct tui *t)
{
	struct tui_compare *c = &t->compare;
	int n = 0;

	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->priv->n_sites; i++)
		n += !c->ref_valid[i] || c->ref_generation[i] != c->generation;
	if (c->detail_site >= 0) {
		for (int k = 0; k < TUI_TRANSFORM_COUNT; k++)
			n += c->detail_state[k] == 0 || c->detail_state[k] == 2;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}
