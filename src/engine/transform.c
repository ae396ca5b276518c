/* Building and applying the per-site transform T = H . B . D. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/log.h"
#include "catscope/parallel.h"
#include "catscope/transform.h"

/* Rows per product when a dense stage runs in place: the chunk bounds the buffer
 * that each block's product goes through. */
#define APPLY_CHUNK_ROWS 512

int
site_layers_check(const struct site_layers *layers, int dim, struct error *err)
{
	if (layers->count < 1 || layers->count > SITE_LAYERS_MAX)
		return error_set(err, "a site has %d layers; expected 1 to %d", layers->count,
				 SITE_LAYERS_MAX);
	for (int l = 0; l < layers->count; l++)
		if (layers->layer[l].rows < 1 || layers->layer[l].weight == NULL)
			return error_set(err, "layer %s has no weights (%d rows)",
					 layers->layer[l].name ? layers->layer[l].name : "?",
					 layers->layer[l].rows);
	if (dim < 1)
		return error_set(err, "invalid site width %d", dim);
	return 0;
}

/* Offset of the dense blocks' storage: block b of size s starts at sum of earlier s^2. */
static int64_t
block_storage_offset(int dim, int k, int b)
{
	return (int64_t)b * k * k;
}

static int
block_count(int dim, int k)
{
	return (dim + k - 1) / k;
}

size_t
transform_heap_bytes(const struct transform *t)
{
	size_t bytes = t->scale != NULL ? (size_t)t->dim * sizeof(float) : 0;

	if (t->dense != NULL)
		bytes += 2 * sizeof(float) *
			 (size_t)block_storage_offset(t->dim, t->dense_block,
						      block_count(t->dim, t->dense_block));
	return bytes;
}

void
transform_free(struct transform *t)
{
	free(t->scale);
	free(t->dense);
	free(t->dense_inv_t);
	t->scale = t->dense = t->dense_inv_t = NULL;
}

static float
column_absmax(const struct site_layers *layers, int dim, int i)
{
	float m = 0;

	for (int l = 0; l < layers->count; l++)
		for (int64_t r = 0; r < layers->layer[l].rows; r++) {
			float v = fabsf(layers->layer[l].weight[r * dim + i]);

			if (v > m)
				m = v;
		}
	return m;
}

static void
build_smooth(const struct site_stats *stats, const struct site_layers *layers,
	     struct transform *t)
{
	int d = t->dim;
	double alpha = t->spec.alpha;

	t->scale = alloc_array(d, sizeof(*t->scale));
	for (int i = 0; i < d; i++) {
		double ax = stats->absmax[i], aw = column_absmax(layers, d, i);
		double s = pow(ax, alpha) / pow(aw, 1 - alpha);

		if (!(ax > 0 && aw > 0) || !isfinite(s) || !(s > 0)) {
			s = 1;
			t->flags |= TRANSFORM_FLAG_DEGENERATE_CHANNEL;
		}
		t->scale[i] = (float)(1.0 / s);
	}
}

/* Sw for the columns [start, start + s): the sum over layers of W_b^T W_b (double). */
static void
weight_block_moment(const struct site_layers *layers, int dim, int start, int s, double *wb,
		    double *out)
{
	memset(out, 0, sizeof(*out) * s * s);
	for (int l = 0; l < layers->count; l++) {
		int rows = layers->layer[l].rows;

		for (int64_t r = 0; r < rows; r++)
			for (int i = 0; i < s; i++)
				wb[r * s + i] = layers->layer[l].weight[r * dim + start + i];
		linalg_dsyrk_t(s, rows, 1.0, wb, s, 1.0, out, s);
	}
}

/* Buffer for weight_block_moment: the largest layer's rows times k doubles. One buffer
 * serves every block, because a fresh one per block spent more time in page faults than
 * in the product. */
static double *
weight_block_buffer(const struct site_layers *layers, int k)
{
	int rows = 1;

	for (int l = 0; l < layers->count; l++)
		if (layers->layer[l].rows > rows)
			rows = layers->layer[l].rows;
	return alloc_array((size_t)rows * k, sizeof(double));
}

static void
build_cat_diagonal(const struct site_stats *stats, const struct site_layers *layers,
		   struct transform *t)
{
	int d = t->dim;
	double *sw = alloc_zeroed(d, sizeof(*sw));
	double mean_x = 0, mean_w = 0;

	for (int l = 0; l < layers->count; l++)
		for (int64_t r = 0; r < layers->layer[l].rows; r++)
			for (int i = 0; i < d; i++) {
				double v = layers->layer[l].weight[r * d + i];

				sw[i] += v * v;
			}
	for (int i = 0; i < d; i++) {
		mean_x += stats->second_moment[(int64_t)i * d + i] / d;
		mean_w += sw[i] / d;
	}
	t->scale = alloc_array(d, sizeof(*t->scale));
	for (int i = 0; i < d; i++) {
		double sx = stats->second_moment[(int64_t)i * d + i] + t->spec.ridge * mean_x;
		double m = pow((sw[i] + t->spec.ridge * mean_w) / sx, 0.25);

		if (!isfinite(m) || !(m > 0)) {
			m = 1;
			t->flags |= TRANSFORM_FLAG_DEGENERATE_CHANNEL;
		}
		t->scale[i] = (float)m;
	}
	free(sw);
}

static void
set_identity(float *a, int s)
{
	memset(a, 0, sizeof(*a) * s * s);
	for (int i = 0; i < s; i++)
		a[(int64_t)i * s + i] = 1;
}

/* Block b of CAT: B_b = G_b^{1/2}, B_b^{-T} = G_b^{-1/2}. Adds
 * TRANSFORM_FLAG_DEGENERATE_BLOCK to *flags for a block left as the identity. */
static int
build_cat_block(const struct site_stats *stats, const struct site_layers *layers,
		const struct transform *t, int start, int s, double *wb, float *dense,
		float *inv_t, unsigned *flags, struct error *err)
{
	int d = t->dim;
	size_t ss = (size_t)s * s;
	double *sx = alloc_array(ss, sizeof(*sx));
	double *sw = alloc_array(ss, sizeof(*sw));
	double *root = alloc_array(ss, sizeof(*root));
	double *inv_root = alloc_array(ss, sizeof(*inv_root));
	double mx, mw;
	int rc = 0;

	for (int64_t i = 0; i < s; i++)
		memcpy(sx + i * s, stats->second_moment + (start + i) * d + start,
		       sizeof(*sx) * s);
	weight_block_moment(layers, d, start, s, wb, sw);
	mx = linalg_mean_diag(s, sx, s);
	mw = linalg_mean_diag(s, sw, s);
	if (!(mx > 0 && mw > 0) || !isfinite(mx) || !isfinite(mw)) {
		set_identity(dense, s);
		set_identity(inv_t, s);
		*flags |= TRANSFORM_FLAG_DEGENERATE_BLOCK;
		goto out;
	}
	for (int64_t i = 0; i < s; i++) {
		sx[i * s + i] += t->spec.ridge * mx;
		sw[i * s + i] += t->spec.ridge * mw;
	}
	rc = linalg_geometric_mean(s, sx, sw, root, inv_root, NULL, err);
	if (rc < 0) {
		error_prefix(err, "CAT block at channel %d (size %d)", start, s);
		goto out;
	}
	for (size_t i = 0; i < ss; i++) {
		dense[i] = (float)root[i];
		inv_t[i] = (float)inv_root[i];
	}
out:
	free(sx);
	free(sw);
	free(root);
	free(inv_root);
	return rc;
}

/* NOTE: the blocks are built one after another. Building them on several threads made
 * the build about three times slower on 2 cores (bench_site, OpenBLAS 0.3.21), because
 * the concurrent LAPACK calls contend with OpenBLAS's own threads. */
static int
build_dense_blocks(const struct site_stats *stats, const struct site_layers *layers,
		   struct transform *t, int k, struct error *err)
{
	int d = t->dim, nb = block_count(d, k), rc = 0;
	double *wb;

	if (k > TRANSFORM_DENSE_MAX)
		return error_set(err, "dense transform blocks of %d channels exceed the limit "
				      "of %d; use a smaller block", k, TRANSFORM_DENSE_MAX);
	wb = t->spec.kind == TRANSFORM_CAT ? weight_block_buffer(layers, k) : NULL;
	t->dense_block = k;
	t->dense = alloc_array((size_t)nb * k * k, sizeof(*t->dense));
	t->dense_inv_t = alloc_array((size_t)nb * k * k, sizeof(*t->dense_inv_t));
	for (int b = 0; b < nb; b++) {
		int start = b * k, s = start + k <= d ? k : d - start;
		float *blk = t->dense + block_storage_offset(d, k, b);
		float *inv = t->dense_inv_t + block_storage_offset(d, k, b);

		if (t->spec.kind == TRANSFORM_RANDOM) {
			double *q = alloc_array((size_t)s * s, sizeof(*q));
			uint64_t seed = t->spec.seed + 0x9e3779b97f4a7c15ull * (uint64_t)b;

			rc = linalg_random_orthogonal(s, seed, q, err);
			for (int64_t i = 0; rc == 0 && i < (int64_t)s * s; i++)
				blk[i] = inv[i] = (float)q[i];
			free(q);
		} else {
			rc = build_cat_block(stats, layers, t, start, s, wb, blk, inv, &t->flags,
					     err);
		}
		if (rc < 0)
			break;
	}
	free(wb);
	return rc;
}

int
transform_build(const struct transform_spec *spec, const struct site_stats *stats,
		const struct site_layers *layers, struct transform *t, struct error *err)
{
	int d = stats->dim;
	int k = transform_block_size(spec, d);
	bool needs_weights = spec->kind == TRANSFORM_SMOOTH || spec->kind == TRANSFORM_CAT;

	memset(t, 0, sizeof(*t));
	t->spec = *spec;
	t->dim = d;
	if (needs_weights) {
		if (layers == NULL)
			return error_set(err, "transform needs the site's weights");
		if (site_layers_check(layers, d, err) < 0)
			return -1;
	}
	if (spec->kind == TRANSFORM_SMOOTH && stats->absmax == NULL)
		return error_set(err, "SmoothQuant needs the per-channel maxima of the site");
	if (spec->kind == TRANSFORM_CAT && stats->second_moment == NULL)
		return error_set(err, "CAT needs the second moment of the site");

	switch (spec->kind) {
	case TRANSFORM_NONE:
		break;
	case TRANSFORM_SMOOTH:
		build_smooth(stats, layers, t);
		break;
	case TRANSFORM_HADAMARD:
		t->hadamard_block = k;
		break;
	case TRANSFORM_RANDOM:
		if (build_dense_blocks(stats, layers, t, k, err) < 0)
			goto fail;
		break;
	case TRANSFORM_CAT:
		if (k == 1) {
			build_cat_diagonal(stats, layers, t);
			break;
		}
		if (build_dense_blocks(stats, layers, t, k, err) < 0)
			goto fail;
		t->hadamard_block = k;
		break;
	}
	if (t->flags != 0)
		log_warn("transform: some channels or blocks of a %d-wide site have zero "
			 "statistics and were left unscaled", d);
	return 0;
fail:
	transform_free(t);
	return -1;
}

bool
transform_is_identity(const struct transform *t)
{
	return t->scale == NULL && t->dense_block == 0 && t->hadamard_block == 0;
}

struct scale_pass {
	const float *src;
	float *dst;
	const float *scale;
	int d;
	bool divide;           /* the weight side divides by the scale */
};

static void
scale_part(void *ctx, int part, int64_t begin, int64_t end)
{
	const struct scale_pass *sp = ctx;
	int d = sp->d;

	(void)part;
	for (int64_t r = begin; r < end; r++) {
		const float *in = sp->src + r * d;
		float *out = sp->dst + r * d;

		if (sp->divide)
			for (int i = 0; i < d; i++)
				out[i] = in[i] / sp->scale[i];
		else
			for (int i = 0; i < d; i++)
				out[i] = in[i] * sp->scale[i];
	}
}

/* Dense stage on n rows (stride d): x_b <- blocks_b x_b, that is X_b <- X_b blocks_b^T.
 * Out of place each block is one product over all rows. In place a chunk of rows goes
 * through a buffer. */
static void
apply_dense(const struct transform *t, const float *blocks, const float *src, float *dst,
	    int64_t n)
{
	int d = t->dim, k = t->dense_block, nb = block_count(d, k);
	float *tmp;

	if (src != dst) {
		for (int b = 0; b < nb; b++) {
			int start = b * k, s = start + k <= d ? k : d - start;

			linalg_sgemm(false, true, (int)n, s, s, 1.0f, src + start, d,
				     blocks + block_storage_offset(d, k, b), s, 0.0f, dst + start, d);
		}
		return;
	}
	tmp = alloc_array((size_t)APPLY_CHUNK_ROWS * k, sizeof(*tmp));
	for (int64_t r0 = 0; r0 < n; r0 += APPLY_CHUNK_ROWS) {
		int rows = (int)(n - r0 < APPLY_CHUNK_ROWS ? n - r0 : APPLY_CHUNK_ROWS);

		for (int b = 0; b < nb; b++) {
			int start = b * k, s = start + k <= d ? k : d - start;
			float *xb = dst + r0 * d + start;

			linalg_sgemm(false, true, rows, s, s, 1.0f, xb, d,
				     blocks + block_storage_offset(d, k, b), s, 0.0f, tmp, s);
			for (int r = 0; r < rows; r++)
				memcpy(xb + (int64_t)r * d, tmp + (int64_t)r * s, sizeof(*tmp) * s);
		}
	}
	free(tmp);
}

/* The stages D, B and H in turn, each reading what the previous one wrote, so that
 * only the first reads src. weights selects T^{-T} (per row: W T^{-1}). */
static void
apply_stages(const struct transform *t, bool weights, const float *src, float *dst,
	     int64_t n)
{
	int d = t->dim;
	const float *cur = src;

	if (t->scale != NULL) {
		struct scale_pass sp = { .src = cur, .dst = dst, .scale = t->scale, .d = d,
					 .divide = weights };

		parallel_for(n, parallel_parts(n, n * d), scale_part, &sp);
		cur = dst;
	}
	if (t->dense_block > 0) {
		apply_dense(t, weights ? t->dense_inv_t : t->dense, cur, dst, n);
		cur = dst;
	}
	if (t->hadamard_block > 0) {
		linalg_hadamard_blocks(cur, dst, n, d, d, t->hadamard_block, false);
		cur = dst;
	}
	if (cur != dst)
		memcpy(dst, cur, sizeof(*dst) * n * d);
}

void
transform_apply_activations(const struct transform *t, float *x, int64_t n)
{
	apply_stages(t, false, x, x, n);
}

void
transform_apply_activations_to(const struct transform *t, const float *x, float *out,
			       int64_t n)
{
	apply_stages(t, false, x, out, n);
}

void
transform_apply_weights(const struct transform *t, float *w, int64_t rows)
{
	apply_stages(t, true, w, w, rows);
}

void
transform_apply_weights_to(const struct transform *t, const float *w, float *out,
			   int64_t rows)
{
	apply_stages(t, true, w, out, rows);
}

/* In place, in tiles so that both the rows and the columns read stay in cache. */
static void
transpose_square(float *a, int n)
{
	enum { TILE = 32 };

	for (int64_t i0 = 0; i0 < n; i0 += TILE)
		for (int64_t j0 = i0; j0 < n; j0 += TILE)
			for (int64_t i = i0; i < i0 + TILE && i < n; i++)
				for (int64_t j = j0 > i + 1 ? j0 : i + 1; j < j0 + TILE && j < n; j++) {
					float v = a[i * n + j];

					a[i * n + j] = a[j * n + i];
					a[j * n + i] = v;
				}
}

void
transform_conjugate(const struct transform *t, const double *sigma, float *out)
{
	int d = t->dim;

	/* Applying T to the rows of S gives S T^T; transposed that is T S, and applying T
	 * to its rows once more gives T S T^T. */
	for (int64_t i = 0; i < (int64_t)d * d; i++)
		out[i] = (float)sigma[i];
	transform_apply_activations(t, out, d);
	transpose_square(out, d);
	transform_apply_activations(t, out, d);
}

void
transform_conjugate_diagonal(const struct transform *t, const double *sigma, double *diag)
{
	int d = t->dim;
	int k = 1;
	float *block;

	if (t->dense_block > 0)
		k = t->dense_block;
	else if (t->hadamard_block > 0)
		k = t->hadamard_block;
	block = alloc_array((size_t)k * k, sizeof(*block));

	/* XXX: the dense and Hadamard stages must share one block size when both exist. */
	for (int b = 0, start = 0; start < d; b++, start += k) {
		int s = start + k <= d ? k : d - start;
		struct transform sub = {
			.spec = t->spec,
			.dim = s,
			.scale = t->scale ? t->scale + start : NULL,
			.dense_block = t->dense_block > 0 ? k : 0,
			.dense = t->dense ? t->dense + (int64_t)b * k * k : NULL,
			.dense_inv_t = t->dense_inv_t ? t->dense_inv_t + (int64_t)b * k * k : NULL,
			.hadamard_block = t->hadamard_block > 0 ? s : 0,
		};

		if (sub.scale == NULL && sub.dense_block == 0 && sub.hadamard_block == s) {
			linalg_hadamard_diagonal(sigma + (int64_t)start * d + start, d, s,
						 diag + start);
			continue;
		}
		for (int64_t i = 0; i < s; i++)
			for (int j = 0; j < s; j++)
				block[i * s + j] = (float)sigma[(start + i) * d + start + j];
		transform_apply_activations(&sub, block, s);
		transpose_square(block, s);
		transform_apply_activations(&sub, block, s);
		for (int64_t i = 0; i < s; i++)
			diag[start + i] = block[i * s + i];
	}
	free(block);
}

void
transform_dense_matrix(const struct transform *t, float *out)
{
	int d = t->dim;

	/* Row i of the result is (T e_i)^T, the i-th column of T; transposing gives T. */
	memset(out, 0, sizeof(*out) * d * d);
	for (int64_t i = 0; i < d; i++)
		out[i * d + i] = 1;
	transform_apply_activations(t, out, d);
	transpose_square(out, d);
}
