/* The model: architecture config, weights as float32 matrices, the tokenizer, and the
 * forward pass with hooks at every quantized input site.
 *
 * Weights are row-major: a linear layer y = W x with W of m rows (outputs) by d
 * columns (inputs). The RMSNorm gains in front of q/k/v and gate/up are folded into
 * those weights at load time (W <- W diag(g)), so the activation passed to a hook at
 * attn_in and ffn_in is the normalised vector without gain, and the model computes
 * exactly what the file describes. The final norm gain is kept separately because the
 * output head may be tied to the embedding. */
#ifndef CATSCOPE_MODEL_H
#define CATSCOPE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"
#include "catscope/sitestats.h"
#include "catscope/tokenizer.h"

enum rope_style {
	ROPE_ADJACENT_PAIRS, /* rotates (x[2i], x[2i+1]): GGUF "llama", llama2.c, Meta */
	ROPE_HALVES,         /* rotates (x[i], x[i + head_dim/2]): Hugging Face Llama */
};

/* The largest context length a model file may declare: 2^24 tokens, far above the
 * context of released models, so that a hostile header cannot size absurd buffers. */
#define MODEL_CONTEXT_MAX (1 << 24)

struct model_config {
	char architecture[32];
	int dim;           /* hidden size */
	int hidden_dim;    /* feed-forward size */
	int n_layers;
	int n_heads;
	int n_kv_heads;
	int head_dim;
	int vocab_size;
	int context_length;
	float norm_eps;
	float rope_theta;
	enum rope_style rope_style;
	/* Llama 3 rope scaling; factor 0 means none. */
	float rope_scaling_factor;
	float rope_low_freq_factor;
	float rope_high_freq_factor;
	int rope_original_context;
	bool qkv_bias;     /* Qwen2 */
	bool qk_norm;      /* Qwen3: RMSNorm per head on q and k */
	bool tied_output;  /* the output head is the token embedding */
};

/* The linear layers of one block; the matrices a simulation may replace. */
enum model_linear {
	LINEAR_Q, LINEAR_K, LINEAR_V, LINEAR_O, LINEAR_GATE, LINEAR_UP, LINEAR_DOWN,
	LINEAR_COUNT
};

struct model_block {
	float *linear[LINEAR_COUNT]; /* row-major, norm gains folded where they apply */
	float *bias_q, *bias_k, *bias_v;     /* NULL unless qkv_bias */
	float *q_norm, *k_norm;              /* head_dim each, NULL unless qk_norm */
};

struct model {
	char *path;
	struct model_config config;
	float *token_embedding; /* vocab x dim */
	float *output_norm;     /* dim */
	float *output;          /* vocab x dim; equals token_embedding when tied */
	struct model_block *blocks;
	struct tokenizer *tokenizer;
	uint64_t fingerprint;   /* hash of the shapes and every weight */
	void *storage;          /* owner of the weight memory */
};

/* Opens a GGUF file or a Hugging Face model directory. */
struct model *model_load(const char *path, struct error *err);
void model_free(struct model *model);

/* Rows and columns of a linear layer, and the site whose input it reads. */
void model_linear_shape(const struct model_config *config, enum model_linear linear, int *rows,
			int *cols);
enum site_kind model_linear_site(enum model_linear linear);
/* Returns the number of weights in the linear layers of one block. */
size_t model_block_linear_count(const struct model_config *config);
/* The row order that turns adjacent-pair RoPE weights into rotate-half ones: row r of
 * the halves layout is row perm[r] of the adjacent layout, head by head (n_heads x
 * head_dim entries). Exact in real arithmetic; attention then sums in another order. */
void model_rope_halves_permutation(int n_heads, int head_dim, int *perm);
const char *model_linear_name(enum model_linear linear);

/* Hooks into the forward pass. site is called with the n x d input of every quantized
 * site, row-major, before the site's layers read it. It may change the values in place,
 * as a simulation does when it transforms and quantizes them. NULL members are skipped. */
struct model_hooks {
	void *ctx;
	void (*site)(void *ctx, int block, enum site_kind kind, float *x, int n_tokens, int dim);
	/* Called with the new keys and values of a block (n x kv_dim each) before they enter
	 * the cache. It may change them, as a KV-cache quantizer does. */
	void (*kv)(void *ctx, int block, float *k, float *v, int n_tokens, int kv_dim);
};

/* Keys and values of past positions, for incremental decoding. */
struct model_kv_cache {
	int capacity;  /* positions */
	int length;    /* positions filled */
	float *k;      /* n_layers x capacity x kv_dim */
	float *v;
};

struct model_kv_cache *model_kv_cache_new(const struct model_config *config, int capacity);
void model_kv_cache_free(struct model_kv_cache *cache);

/* Scratch space for a forward pass of up to max_tokens tokens at once. */
struct model_workspace;
struct model_workspace *model_workspace_new(const struct model_config *config, int max_tokens,
					    int max_context);
void model_workspace_free(struct model_workspace *ws);

/* Runs n_tokens tokens at positions cache->length onward (the cache grows by n_tokens)
 * and writes their logits (n_tokens x vocab) to logits, which may be NULL when only
 * the hooks matter. blocks replaces the model's own linear layers when not NULL (one
 * entry per block). Deterministic for a given thread count. */
int model_forward(const struct model *model, const struct model_block *blocks,
		  struct model_workspace *ws, struct model_kv_cache *cache, const int32_t *tokens,
		  int n_tokens, float *logits, const struct model_hooks *hooks, struct error *err);

#endif
