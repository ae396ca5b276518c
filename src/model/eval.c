#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "catscope/alloc.h"
#include "catscope/eval.h"

/* -log softmax(logits)[target], in double so that long runs do not drift. */
static double
eval_token_nll(const float *logits, int vocab, int target)
{
	float max = logits[0];
	double sum = 0.0;

	for (int j = 1; j < vocab; j++)
		max = logits[j] > max ? logits[j] : max;
	for (int j = 0; j < vocab; j++)
		sum += exp((double)logits[j] - max);
	return log(sum) - ((double)logits[target] - max);
}

int
eval_perplexity(const struct model *m, const struct model_block *blocks,
		const struct model_hooks *hooks, const int32_t *tokens, size_t n, int ctx,
		struct progress *progress, struct eval_result *result, struct error *err)
{
	const struct model_config *c = &m->config;
	size_t windows;
	double nll = 0.0;
	double start = progress_now();
	float *logits;
	struct model_workspace *ws;
	struct model_kv_cache *cache;
	int rc = 0;

	if (ctx < 2)
		return error_set(err, "the window length must be at least 2 tokens (got %d)", ctx);
	if (n < (size_t)ctx)
		return error_set(err, "the text has %zu tokens, fewer than one window of %d; use a "
				 "shorter --ctx or more text", n, ctx);
	windows = n / (size_t)ctx;
	logits = alloc_aligned((size_t)ctx * c->vocab_size, sizeof(float));
	ws = model_workspace_new(c, ctx, ctx);
	cache = model_kv_cache_new(c, ctx);

	for (size_t w = 0; w < windows; w++) {
		const int32_t *window = tokens + w * (size_t)ctx;

		if (progress_cancelled(progress)) {
			rc = error_set(err, "perplexity cancelled after %zu of %zu windows", w, windows);
			break;
		}
		cache->length = 0;
		if (model_forward(m, blocks, ws, cache, window, ctx, logits, hooks, err) != 0) {
			rc = -1;
			break;
		}
		for (int t = 0; t + 1 < ctx; t++)
			nll += eval_token_nll(logits + (size_t)t * c->vocab_size, c->vocab_size, window[t + 1]);
		if (progress != NULL)
			progress_update(progress, (w + 1) * (uint64_t)ctx);
	}
	if (rc == 0) {
		result->windows = (int)windows;
		result->scored = windows * (uint64_t)(ctx - 1);
		result->mean_nll = nll / (double)result->scored;
		result->perplexity = exp(result->mean_nll);
		result->seconds = progress_now() - start;
		result->tokens_per_second = (double)(windows * (size_t)ctx) / result->seconds;
	}
	free(logits);
	model_workspace_free(ws);
	model_kv_cache_free(cache);
	return rc;
}
