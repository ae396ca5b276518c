/* Forward-pass throughput: tokens/s and GFLOP/s on the real stories260K model and on a
 * synthetic model of Llama-3.2-1B shape, each against this machine's sgemm peak. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "catscope/alloc.h"
#include "catscope/model.h"
#include "catscope/model_load.h"
#include "catscope/progress.h"

/* Best of three square sgemm runs, the ceiling for every GEMM-bound part. */
static double
bench_sgemm_peak(int n)
{
	float *a = alloc_aligned((size_t)n * n, sizeof(float));
	float *b = alloc_aligned((size_t)n * n, sizeof(float));
	float *c = alloc_aligned((size_t)n * n, sizeof(float));
	double best = 0.0;

	for (size_t i = 0; i < (size_t)n * n; i++) {
		a[i] = (float)(i % 7) * 0.1f;
		b[i] = (float)(i % 5) * 0.1f;
	}
	for (int r = 0; r < 4; r++) {
		double t0 = progress_now();

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
		double gflops = 2.0 * n * n * n / (progress_now() - t0) * 1e-9;

		if (r > 0 && gflops > best)
			best = gflops;
	}
	free(a);
	free(b);
	free(c);
	return best;
}

/* Multiply-adds of one window of n tokens, times two: linear layers, attention
 * (scores and weighted values over the causal half on average) and the output head. */
static double
bench_window_flops(const struct model_config *c, int n)
{
	double linear = 0.0;

	for (int j = 0; j < LINEAR_COUNT; j++) {
		int rows, cols;

		model_linear_shape(c, (enum model_linear)j, &rows, &cols);
		linear += (double)rows * cols;
	}
	double per_token = 2.0 * (linear * c->n_layers + (double)c->vocab_size * c->dim);
	double attention = 2.0 * 2.0 * c->n_layers * (double)c->n_heads * c->head_dim * n * n;

	return per_token * n + attention;
}

static void
bench_model(const char *label, const struct model *m, int ctx, int windows, double peak)
{
	struct model_workspace *ws = model_workspace_new(&m->config, ctx, ctx);
	struct model_kv_cache *cache = model_kv_cache_new(&m->config, ctx);
	float *logits = alloc_aligned((size_t)ctx * m->config.vocab_size, sizeof(float));
	int32_t *tokens = alloc_array((size_t)ctx, sizeof(int32_t));
	struct error err;
	double t0;

	for (int i = 0; i < ctx; i++)
		tokens[i] = (int32_t)((i * 7919) % m->config.vocab_size);
	cache->length = 0;
	model_forward(m, NULL, ws, cache, tokens, ctx, logits, NULL, &err); /* warm-up */
	t0 = progress_now();
	for (int w = 0; w < windows; w++) {
		cache->length = 0;
		if (model_forward(m, NULL, ws, cache, tokens, ctx, logits, NULL, &err) != 0) {
			fprintf(stderr, "bench: %s\n", err.message);
			exit(1);
		}
	}
	double seconds = progress_now() - t0;
	double gflops = bench_window_flops(&m->config, ctx) * windows / seconds * 1e-9;

	printf("%-28s ctx %4d  %10.0f tokens/s  %7.1f GFLOP/s  %5.1f%% of sgemm peak\n", label, ctx,
	       (double)ctx * windows / seconds, gflops, 100.0 * gflops / peak);
	free(logits);
	free(tokens);
	model_kv_cache_free(cache);
	model_workspace_free(ws);
}

/* A model of Llama-3.2-1B's shape with random weights; only speed is measured on it. */
static struct model *
bench_synthetic_1b(void)
{
	struct model *m = alloc_zeroed(1, sizeof(*m));
	struct model_config *c = &m->config;
	size_t total = 0;
	uint64_t state = 12345;

	snprintf(c->architecture, sizeof(c->architecture), "llama");
	c->dim = 2048;
	c->hidden_dim = 8192;
	c->n_layers = 16;
	c->n_heads = 32;
	c->n_kv_heads = 8;
	c->head_dim = 64;
	c->vocab_size = 128256;
	c->context_length = 2048;
	c->norm_eps = 1e-5f;
	c->rope_theta = 500000.0f;
	c->tied_output = true;
	total = model_block_linear_count(c) * (size_t)c->n_layers;
	total += (size_t)c->vocab_size * c->dim + c->dim;
	float *p = m->storage = alloc_aligned(total, sizeof(float));

	for (size_t i = 0; i < total; i++) {
		state = state * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = ((float)(state >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
	}
	m->token_embedding = m->output = p;
	p += (size_t)c->vocab_size * c->dim;
	m->output_norm = p;
	for (int i = 0; i < c->dim; i++)
		p[i] = 1.0f;
	p += c->dim;
	m->blocks = alloc_zeroed((size_t)c->n_layers, sizeof(*m->blocks));
	for (int l = 0; l < c->n_layers; l++) {
		for (int j = 0; j < LINEAR_COUNT; j++) {
			int rows, cols;

			model_linear_shape(c, (enum model_linear)j, &rows, &cols);
			m->blocks[l].linear[j] = p;
			p += (size_t)rows * cols;
		}
	}
	return m;
}

int
main(void)
{
	const char *dir = getenv("CATSCOPE_DATA");
	char path[4096];
	struct error err;
	double peak = bench_sgemm_peak(4096);

	printf("sgemm peak (4096^3, best of 3): %.1f GFLOP/s\n", peak);
	snprintf(path, sizeof(path), "%s/stories260K.gguf", dir ? dir : "../shared/data");
	struct model *real = model_load(path, &err);

	if (real == NULL) {
		fprintf(stderr, "bench: %s\n", err.message);
		return 1;
	}
	bench_model("stories260K (real)", real, 256, 40, peak);
	bench_model("stories260K (real)", real, 512, 20, peak);
	model_free(real);

	struct model *big = bench_synthetic_1b();

	bench_model("Llama-3.2-1B shape (random)", big, 512, 1, peak);
	model_free(big);
	return 0;
}
