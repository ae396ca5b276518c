/* Calibration runs: windows through the forward pass, a site hook feeding the
 * accumulators, and the provenance of the result. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/calib.h"
#include "catscope/hash.h"
#include "calib_impl.h"

struct calib_run_state {
	struct calib_accumulator *accumulators; /* n_layers x SITE_KIND_COUNT */
	double *scratch;                        /* ctx x widest site, in double */
};

static void
calib_on_site(void *ctx, int block, enum site_kind kind, float *x, int n_tokens, int dim)
{
	struct calib_run_state *state = ctx;

	calib_accumulator_add(&state->accumulators[block * SITE_KIND_COUNT + kind], x, n_tokens,
			      state->scratch);
	(void)dim;
}

static int
calib_site_dim(const struct model_config *c, enum site_kind kind)
{
	switch (kind) {
	case SITE_ATTN_OUT:
		return c->n_heads * c->head_dim;
	case SITE_FFN_DOWN:
		return c->hidden_dim;
	default:
		return c->dim;
	}
}

const char *
calib_site_label(char *buffer, size_t size, int block, enum site_kind kind)
{
	snprintf(buffer, size, "blk.%d.%s", block, site_kind_name(kind));
	return buffer;
}

void
calib_site_stats_clear(struct site_stats *stats)
{
	free(stats->second_moment);
	free(stats->mean);
	free(stats->absmax);
	free(stats->sample);
	memset(stats, 0, sizeof(*stats));
}

static int
calib_check_window(const struct model *model, size_t n, int ctx, const struct calib_options *options,
		   struct error *err)
{
	if (ctx < 1)
		return error_set(err, "the window length must be at least 1 token (got %d)", ctx);
	if (ctx > model->config.context_length)
		return error_set(err, "the window of %d tokens is longer than the model's context of "
				 "%d; use a smaller --ctx", ctx, model->config.context_length);
	if (options->sample_size < 0)
		return error_set(err, "the sample size must not be negative (got %d)",
				 options->sample_size);
	if (n < (size_t)ctx)
		return error_set(err, "the text has %zu tokens, fewer than one window of %d; use a "
				 "shorter --ctx or more text", n, ctx);
	if (options->max_tokens != 0 && options->max_tokens < (uint64_t)ctx)
		return error_set(err, "--tokens %llu is less than one window of %d tokens",
				 (unsigned long long)options->max_tokens, ctx);
	return 0;
}

static void
calib_fill_provenance(struct calib_result *result, const struct model *model, int ctx,
		      size_t windows, const struct calib_options *options)
{
	struct calib_provenance *p = &result->provenance;

	p->fingerprint = model->fingerprint;
	p->config = model->config;
	p->n_tokens = (uint64_t)windows * (uint64_t)ctx;
	p->ctx = ctx;
	p->n_windows = (int)windows;
	p->seed = options->seed;
	p->sample_size = options->sample_size;
	snprintf(p->version, sizeof(p->version), "%s", PACKAGE_VERSION);
}

struct calib_result *
calib_run(const struct model *model, const int32_t *tokens, size_t n, int ctx,
	  const struct calib_options *options, struct progress *progress, struct error *err)
{
	const struct model_config *c = &model->config;
	int n_sites = c->n_layers * SITE_KIND_COUNT;
	int widest = c->dim;
	size_t windows;
	struct calib_run_state state;
	struct model_hooks hooks = { 0 };
	struct model_workspace *ws;
	struct model_kv_cache *cache;
	struct calib_result *result;
	int rc = 0;

	if (calib_check_window(model, n, ctx, options, err) != 0)
		return NULL;
	if (options->max_tokens != 0 && options->max_tokens < n)
		n = (size_t)options->max_tokens;
	windows = n / (size_t)ctx;
	if (windows > (size_t)INT32_MAX)
		windows = INT32_MAX;

	state.accumulators = alloc_zeroed((size_t)n_sites, sizeof(*state.accumulators));
	for (int s = 0; s < n_sites; s++) {
		int dim = calib_site_dim(c, (enum site_kind)(s % SITE_KIND_COUNT));

		widest = dim > widest ? dim : widest;
		calib_accumulator_init(&state.accumulators[s], dim, options->sample_size, options->seed);
	}
	state.scratch = alloc_aligned((size_t)ctx * widest, sizeof(double));
	hooks.ctx = &state;
	hooks.site = calib_on_site;
	ws = model_workspace_new(c, ctx, ctx);
	cache = model_kv_cache_new(c, ctx);

	for (size_t w = 0; w < windows; w++) {
		if (atomic_interrupted()) {
			rc = error_set(err, "calibration interrupted after %zu of %zu windows; nothing "
				       "was written", w, windows);
			break;
		}
		cache->length = 0;
		rc = model_forward(model, NULL, ws, cache, tokens + w * (size_t)ctx, ctx, NULL, &hooks,
				   err);
		if (rc != 0)
			break;
		if (progress != NULL)
			progress_update(progress, (w + 1) * (uint64_t)ctx);
	}
	model_workspace_free(ws);
	model_kv_cache_free(cache);
	free(state.scratch);

	result = NULL;
	if (rc == 0) {
		result = alloc_zeroed(1, sizeof(*result));
		result->n_blocks = c->n_layers;
		result->sites = alloc_zeroed((size_t)n_sites, sizeof(*result->sites));
		calib_fill_provenance(result, model, ctx, windows, options);
	}
	for (int s = 0; s < n_sites; s++) {
		if (result != NULL)
			calib_accumulator_finish(&state.accumulators[s], &result->sites[s]);
		else
			calib_accumulator_fini(&state.accumulators[s]);
	}
	free(state.accumulators);
	return result;
}

void
calib_result_free(struct calib_result *result)
{
	if (result == NULL)
		return;
	for (int s = 0; s < result->n_blocks * SITE_KIND_COUNT; s++)
		calib_site_stats_clear(&result->sites[s]);
	free(result->sites);
	for (int i = 0; i < result->provenance.n_texts; i++)
		free(result->provenance.texts[i].name);
	free(result->provenance.texts);
	free(result);
}

int
calib_result_add_text(struct calib_result *result, const char *path, struct error *err)
{
	struct calib_provenance *p = &result->provenance;
	FILE *f = fopen(path, "rb");
	uint64_t h = HASH_SEED;
	uint64_t size = 0;
	char buffer[1 << 16];
	size_t got;

	if (f == NULL)
		return error_set(err, "%s: cannot open the text file: %s", path, strerror(errno));
	while ((got = fread(buffer, 1, sizeof(buffer), f)) > 0) {
		h = hash_update(h, buffer, got);
		size += got;
	}
	if (ferror(f)) {
		fclose(f);
		return error_set(err, "%s: reading the text file failed", path);
	}
	fclose(f);
	p->texts = alloc_resize(p->texts, (size_t)p->n_texts + 1, sizeof(*p->texts));
	p->texts[p->n_texts].name = alloc_strdup(path);
	p->texts[p->n_texts].size = size;
	p->texts[p->n_texts].hash = h;
	p->n_texts++;
	return 0;
}
