/* The forward pass of a Llama-family decoder over a window of tokens.
 *
 * Every matrix product is one BLAS call over all tokens of the window; attention runs
 * per head as two products (scores, then weighted values). The quantized input sites
 * are the activations passed to hooks->site, just before the layers that read them. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/model.h"

struct model_workspace {
	int max_tokens;
	int max_context;
	float *x;       /* max_tokens x dim: the residual stream */
	float *xn;      /* max_tokens x dim: normalised input of a site */
	float *q;       /* max_tokens x q_dim */
	float *k;       /* max_tokens x kv_dim: new keys */
	float *v;       /* max_tokens x kv_dim: new values */
	float *att;     /* max_tokens x q_dim: concatenated head outputs */
	float *scores;  /* max_tokens x max_context */
	float *gate;    /* max_tokens x hidden_dim */
	float *up;      /* max_tokens x hidden_dim */
	float *out;     /* max_tokens x dim: a layer's output before the residual add */
	float *cos_table; /* max_tokens x head_dim/2 */
	float *sin_table;
	double *inv_freq; /* head_dim/2 */
};

struct model_workspace *
model_workspace_new(const struct model_config *c, int max_tokens, int max_context)
{
	struct model_workspace *ws = alloc_zeroed(1, sizeof(*ws));
	size_t n = (size_t)max_tokens;
	int q_dim = c->n_heads * c->head_dim;
	int kv_dim = c->n_kv_heads * c->head_dim;
	int half = c->head_dim / 2;

	ws->max_tokens = max_tokens;
	ws->max_context = max_context;
	ws->x = alloc_aligned(n * c->dim, sizeof(float));
	ws->xn = alloc_aligned(n * (c->dim > q_dim ? c->dim : q_dim), sizeof(float));
	ws->q = alloc_aligned(n * q_dim, sizeof(float));
	ws->k = alloc_aligned(n * kv_dim, sizeof(float));
	ws->v = alloc_aligned(n * kv_dim, sizeof(float));
	ws->att = alloc_aligned(n * q_dim, sizeof(float));
	ws->scores = alloc_aligned(n * (size_t)max_context, sizeof(float));
	ws->gate = alloc_aligned(n * c->hidden_dim, sizeof(float));
	ws->up = alloc_aligned(n * c->hidden_dim, sizeof(float));
	ws->out = alloc_aligned(n * c->dim, sizeof(float));
	ws->cos_table = alloc_aligned(n * half, sizeof(float));
	ws->sin_table = alloc_aligned(n * half, sizeof(float));
	ws->inv_freq = alloc_array((size_t)half, sizeof(double));

	for (int i = 0; i < half; i++) {
		double freq = pow((double)c->rope_theta, -2.0 * i / c->head_dim);

		if (c->rope_scaling_factor > 0.0f) {
			/* Llama 3.1 scaling: long wavelengths are slowed by the factor, short ones
			 * kept, and the band between them interpolated smoothly. */
			double low_wavelength = c->rope_original_context / c->rope_low_freq_factor;
			double high_wavelength = c->rope_original_context / c->rope_high_freq_factor;
			double wavelength = 2.0 * M_PI / freq;

			if (wavelength > low_wavelength) {
				freq /= c->rope_scaling_factor;
			} else if (wavelength >= high_wavelength) {
				double smooth = (c->rope_original_context / wavelength - c->rope_low_freq_factor) /
						(c->rope_high_freq_factor - c->rope_low_freq_factor);

				freq = (1.0 - smooth) * freq / c->rope_scaling_factor + smooth * freq;
			}
		}
		ws->inv_freq[i] = freq;
	}
	return ws;
}

void
model_workspace_free(struct model_workspace *ws)
{
	if (ws == NULL)
		return;
	free(ws->x);
	free(ws->xn);
	free(ws->q);
	free(ws->k);
	free(ws->v);
	free(ws->att);
	free(ws->scores);
	free(ws->gate);
	free(ws->up);
	free(ws->out);
	free(ws->cos_table);
	free(ws->sin_table);
	free(ws->inv_freq);
	free(ws);
}

struct model_kv_cache *
model_kv_cache_new(const struct model_config *c, int capacity)
{
	struct model_kv_cache *cache = alloc_zeroed(1, sizeof(*cache));
	size_t size = (size_t)c->n_layers * capacity * c->n_kv_heads * c->head_dim;

	cache->capacity = capacity;
	cache->k = alloc_aligned(size, sizeof(float));
	cache->v = alloc_aligned(size, sizeof(float));
	return cache;
}

void
model_kv_cache_free(struct model_kv_cache *cache)
{
	if (cache == NULL)
		return;
	free(cache->k);
	free(cache->v);
	free(cache);
}

/* out = x / rms(x), row by row; the gain, where there is one, is applied by the caller
 * or folded into the next layer. */
static void
forward_rmsnorm(float *out, const float *x, int n, int dim, float eps)
{
	for (int t = 0; t < n; t++) {
		const float *row = x + (size_t)t * dim;
		float *dst = out + (size_t)t * dim;
		double sum = 0.0;

		for (int i = 0; i < dim; i++)
			sum += (double)row[i] * row[i];
		float scale = (float)(1.0 / sqrt(sum / dim + eps));

		for (int i = 0; i < dim; i++)
			dst[i] = row[i] * scale;
	}
}

/* y (n x rows) = x (n x cols) W^T, with W rows x cols. */
static void
forward_linear(float *y, const float *x, const float *w, int n, int rows, int cols)
{
	linalg_sgemm(false, true, n, rows, cols, 1.0f, x, cols, w, cols, 0.0f, y, rows);
}

static void
forward_rope_tables(struct model_workspace *ws, int half, int pos0, int n)
{
	for (int t = 0; t < n; t++) {
		for (int i = 0; i < half; i++) {
			double angle = (double)(pos0 + t) * ws->inv_freq[i];

			ws->cos_table[(size_t)t * half + i] = (float)cos(angle);
			ws->sin_table[(size_t)t * half + i] = (float)sin(angle);
		}
	}
}

/* Rotates each head of x (n x n_heads*head_dim) by its position. */
static void
forward_rope(const struct model_workspace *ws, const struct model_config *c, float *x, int n,
	     int n_heads)
{
	int half = c->head_dim / 2;

	for (int t = 0; t < n; t++) {
		const float *cs = ws->cos_table + (size_t)t * half;
		const float *sn = ws->sin_table + (size_t)t * half;

		for (int h = 0; h < n_heads; h++) {
			float *head = x + ((size_t)t * n_heads + h) * c->head_dim;

			for (int i = 0; i < half; i++) {
				int a = c->rope_style == ROPE_ADJACENT_PAIRS ? 2 * i : i;
				int b = c->rope_style == ROPE_ADJACENT_PAIRS ? 2 * i + 1 : i + half;
				float x0 = head[a];
				float x1 = head[b];

				head[a] = x0 * cs[i] - x1 * sn[i];
				head[b] = x0 * sn[i] + x1 * cs[i];
			}
		}
	}
}

static void
forward_head_norm(float *x, int n, int n_heads, int head_dim, const float *gain, float eps)
{
	for (int r = 0; r < n * n_heads; r++) {
		float *head = x + (size_t)r * head_dim;

		forward_rmsnorm(head, head, 1, head_dim, eps);
		for (int i = 0; i < head_dim; i++)
			head[i] *= gain[i];
	}
}

static void
forward_add_bias(float *y, const float *bias, int n, int dim)
{
	for (int t = 0; t < n; t++) {
		for (int i = 0; i < dim; i++)
			y[(size_t)t * dim + i] += bias[i];
	}
}

/* Causal softmax attention of the n new queries over all ctx cached positions. */
static void
forward_attention(struct model_workspace *ws, const struct model_config *c, const float *k_cache,
		  const float *v_cache, int pos0, int n)
{
	int q_dim = c->n_heads * c->head_dim;
	int kv_dim = c->n_kv_heads * c->head_dim;
	int group = c->n_heads / c->n_kv_heads;
	int ctx = pos0 + n;
	float scale = 1.0f / sqrtf((float)c->head_dim);

	for (int h = 0; h < c->n_heads; h++) {
		int g = h / group;

		linalg_sgemm(false, true, n, ctx, c->head_dim, scale,
			    ws->q + (size_t)h * c->head_dim, q_dim, k_cache + (size_t)g * c->head_dim,
			    kv_dim, 0.0f, ws->scores, ctx);
		for (int t = 0; t < n; t++) {
			float *row = ws->scores + (size_t)t * ctx;
			int visible = pos0 + t + 1;
			float max = row[0];
			double sum = 0.0;

			for (int j = 1; j < visible; j++)
				max = row[j] > max ? row[j] : max;
			for (int j = 0; j < visible; j++) {
				row[j] = expf(row[j] - max);
				sum += row[j];
			}
			float inv = (float)(1.0 / sum);

			for (int j = 0; j < visible; j++)
				row[j] *= inv;
			for (int j = visible; j < ctx; j++)
				row[j] = 0.0f;
		}
		linalg_sgemm(false, false, n, c->head_dim, ctx, 1.0f,
			    ws->scores, ctx, v_cache + (size_t)g * c->head_dim, kv_dim, 0.0f,
			    ws->att + (size_t)h * c->head_dim, q_dim);
	}
}

static void
forward_call_site(const struct model_hooks *hooks, int block, enum site_kind kind, float *x, int n,
		  int dim)
{
	if (hooks != NULL && hooks->site != NULL)
		hooks->site(hooks->ctx, block, kind, x, n, dim);
}

static void
forward_block(const struct model *m, const struct model_block *b, int l, struct model_workspace *ws,
	      struct model_kv_cache *cache, int pos0, int n, const struct model_hooks *hooks)
{
	const struct model_config *c = &m->config;
	int q_dim = c->n_heads * c->head_dim;
	int kv_dim = c->n_kv_heads * c->head_dim;
	size_t layer_offset = (size_t)l * cache->capacity * kv_dim;
	float *k_cache = cache->k + layer_offset;
	float *v_cache = cache->v + layer_offset;
	const struct model_block *own = &m->blocks[l];

	/* Attention. */
	forward_rmsnorm(ws->xn, ws->x, n, c->dim, c->norm_eps);
	forward_call_site(hooks, l, SITE_ATTN_IN, ws->xn, n, c->dim);
	forward_linear(ws->q, ws->xn, b->linear[LINEAR_Q], n, q_dim, c->dim);
	forward_linear(ws->k, ws->xn, b->linear[LINEAR_K], n, kv_dim, c->dim);
	forward_linear(ws->v, ws->xn, b->linear[LINEAR_V], n, kv_dim, c->dim);
	if (c->qkv_bias) {
		forward_add_bias(ws->q, own->bias_q, n, q_dim);
		forward_add_bias(ws->k, own->bias_k, n, kv_dim);
		forward_add_bias(ws->v, own->bias_v, n, kv_dim);
	}
	if (c->qk_norm) {
		forward_head_norm(ws->q, n, c->n_heads, c->head_dim, own->q_norm, c->norm_eps);
		forward_head_norm(ws->k, n, c->n_kv_heads, c->head_dim, own->k_norm, c->norm_eps);
	}
	forward_rope(ws, c, ws->q, n, c->n_heads);
	forward_rope(ws, c, ws->k, n, c->n_kv_heads);
	if (hooks != NULL && hooks->kv != NULL)
		hooks->kv(hooks->ctx, l, ws->k, ws->v, n, kv_dim);
	memcpy(k_cache + (size_t)pos0 * kv_dim, ws->k, (size_t)n * kv_dim * sizeof(float));
	memcpy(v_cache + (size_t)pos0 * kv_dim, ws->v, (size_t)n * kv_dim * sizeof(float));
	forward_attention(ws, c, k_cache, v_cache, pos0, n);
	forward_call_site(hooks, l, SITE_ATTN_OUT, ws->att, n, q_dim);
	forward_linear(ws->out, ws->att, b->linear[LINEAR_O], n, c->dim, q_dim);
	for (size_t i = 0; i < (size_t)n * c->dim; i++)
		ws->x[i] += ws->out[i];

	/* Feed-forward: down(silu(gate) * up). */
	forward_rmsnorm(ws->xn, ws->x, n, c->dim, c->norm_eps);
	forward_call_site(hooks, l, SITE_FFN_IN, ws->xn, n, c->dim);
	forward_linear(ws->gate, ws->xn, b->linear[LINEAR_GATE], n, c->hidden_dim, c->dim);
	forward_linear(ws->up, ws->xn, b->linear[LINEAR_UP], n, c->hidden_dim, c->dim);
	for (size_t i = 0; i < (size_t)n * c->hidden_dim; i++) {
		float g = ws->gate[i];

		ws->gate[i] = g / (1.0f + expf(-g)) * ws->up[i];
	}
	forward_call_site(hooks, l, SITE_FFN_DOWN, ws->gate, n, c->hidden_dim);
	forward_linear(ws->out, ws->gate, b->linear[LINEAR_DOWN], n, c->dim, c->hidden_dim);
	for (size_t i = 0; i < (size_t)n * c->dim; i++)
		ws->x[i] += ws->out[i];
}

int
model_forward(const struct model *m, const struct model_block *blocks, struct model_workspace *ws,
	      struct model_kv_cache *cache, const int32_t *tokens, int n, float *logits,
	      const struct model_hooks *hooks, struct error *err)
{
	const struct model_config *c = &m->config;
	int pos0 = cache->length;

	if (n <= 0 || n > ws->max_tokens)
		return error_set(err, "a forward pass of %d tokens does not fit the workspace of %d", n,
				 ws->max_tokens);
	if (pos0 + n > cache->capacity || pos0 + n > ws->max_context)
		return error_set(err, "the context of %d tokens is full (%d requested)", cache->capacity,
				 pos0 + n);
	for (int t = 0; t < n; t++) {
		if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
			return error_set(err, "token id %d is outside the vocabulary of %d", tokens[t],
					 c->vocab_size);
		memcpy(ws->x + (size_t)t * c->dim, m->token_embedding + (size_t)tokens[t] * c->dim,
		       (size_t)c->dim * sizeof(float));
	}
	if (blocks == NULL)
		blocks = m->blocks;
	forward_rope_tables(ws, c->head_dim / 2, pos0, n);
	for (int l = 0; l < c->n_layers; l++)
		forward_block(m, &blocks[l], l, ws, cache, pos0, n, hooks);
	cache->length = pos0 + n;

	if (logits != NULL) {
		forward_rmsnorm(ws->xn, ws->x, n, c->dim, c->norm_eps);
		for (int t = 0; t < n; t++) {
			for (int i = 0; i < c->dim; i++)
				ws->xn[(size_t)t * c->dim + i] *= m->output_norm[i];
		}
		forward_linear(logits, ws->xn, m->output, n, c->vocab_size, c->dim);
	}
	return 0;
}
