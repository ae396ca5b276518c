/* Running an exported model: each site's transform and quantizers as forward hooks,
 * and the KV-cache quantizer shared with the simulation. */
#include "config.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "catscope/alloc.h"
#include "catscope/jsonfile.h"
#include "catscope/model_load.h"
#include "export_impl.h"

void
export_kv_quant_init(struct export_kv_quant *kv, int bits, int head_dim)
{
	memset(kv, 0, sizeof(*kv));
	kv->params.bits = bits;
	kv->params.mode = QUANT_ASYMMETRIC;
	kv->params.group_size = head_dim;
	kv->params.clip = 1.0f;
}

void
export_kv_quant_apply(const struct export_kv_quant *kv, float *x, int n_tokens, int kv_dim)
{
	if (kv->params.bits > 0)
		quant_fake_rows(x, n_tokens, kv_dim, kv_dim, &kv->params, NULL);
}

static void
export_chain_site(void *ctx, int block, enum site_kind kind, float *x, int n, int dim)
{
	struct export_hook_chain *chain = ctx;

	if (chain->inner != NULL && chain->inner->site != NULL)
		chain->inner->site(chain->inner->ctx, block, kind, x, n, dim);
}

static void
export_chain_kv(void *ctx, int block, float *k, float *v, int n, int kv_dim)
{
	struct export_hook_chain *chain = ctx;

	if (chain->inner != NULL && chain->inner->kv != NULL)
		chain->inner->kv(chain->inner->ctx, block, k, v, n, kv_dim);
	export_kv_quant_apply(&chain->kv, k, n, kv_dim);
	export_kv_quant_apply(&chain->kv, v, n, kv_dim);
}

void
export_hook_chain_init(struct export_hook_chain *chain, const struct model_hooks *inner,
		       int kv_bits, int head_dim)
{
	memset(chain, 0, sizeof(*chain));
	chain->inner = inner;
	export_kv_quant_init(&chain->kv, kv_bits, head_dim);
	chain->hooks.ctx = chain;
	chain->hooks.site = export_chain_site;
	chain->hooks.kv = export_chain_kv;
}

bool
export_is_directory(const char *dir)
{
	struct stat st;

	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && model_is_export(dir);
}

static void
export_runtime_site_hook(void *ctx, int block, enum site_kind kind, float *x, int n, int dim)
{
	struct export_runtime *rt = ctx;
	const struct transform *t = &rt->transforms[analysis_site_index(block, kind)];

	transform_apply_activations(t, x, n);
	if (rt->act.bits > 0)
		quant_fake_rows(x, n, dim, dim, &rt->act, NULL);
}

static void
export_runtime_kv_hook(void *ctx, int block, float *k, float *v, int n, int kv_dim)
{
	struct export_runtime *rt = ctx;

	(void)block;
	export_kv_quant_apply(&rt->kv, k, n, kv_dim);
	export_kv_quant_apply(&rt->kv, v, n, kv_dim);
}

static int
export_site_width(const struct model_config *c, enum site_kind kind)
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

/* Finds an optional tensor and checks its dtype and shape; a shape entry of 0 matches
 * any size. Returns NULL (err clear) when absent, or NULL with err set when wrong. */
static const struct safetensors_tensor *
export_find(const struct safetensors_checkpoint *ckpt, const char *name,
	    enum safetensors_dtype dtype, int n_dims, const uint64_t *shape, int *failed,
	    struct error *err)
{
	const struct safetensors_file *file;
	const struct safetensors_tensor *t = safetensors_checkpoint_find(ckpt, name, &file);
	bool ok;

	if (t == NULL)
		return NULL;
	ok = t->dtype == dtype && t->n_dims == n_dims;
	for (int i = 0; ok && i < n_dims; i++)
		ok = shape[i] == 0 || t->shape[i] == shape[i];
	if (!ok) {
		char seen[96] = "", expected[96] = "";
		size_t at = 0, at_e = 0;

		for (int i = 0; i < t->n_dims && at < sizeof(seen); i++)
			at += (size_t)snprintf(seen + at, sizeof(seen) - at, "%s%" PRIu64, i ? ", " : "", t->shape[i]);
		for (int i = 0; i < n_dims && at_e < sizeof(expected); i++) {
			if (shape[i] == 0)
				at_e += (size_t)snprintf(expected + at_e, sizeof(expected) - at_e, "%s*", i ? ", " : "");
			else
				at_e += (size_t)snprintf(expected + at_e, sizeof(expected) - at_e, "%s%" PRIu64,
							 i ? ", " : "", shape[i]);
		}
		*failed = 1;
		error_set(err, "%s: tensor '%s' is %s [%s], expected %s [%s]", file->path, name,
			  safetensors_dtype_name(t->dtype), seen, safetensors_dtype_name(dtype), expected);
	}
	return ok ? t : NULL;
}

static float *
export_tensor_floats(const struct safetensors_tensor *t)
{
	float *out = alloc_array((size_t)t->n_elements, sizeof(float));

	safetensors_tensor_to_f32(t, out);
	return out;
}

/* Rebuilds T = H . B . D of one site from its tensors. */
static int
export_read_transform(const struct safetensors_checkpoint *ckpt, int l, enum site_kind kind, int d,
		      struct transform *t, struct error *err)
{
	char name[160];
	const char *site = site_kind_name(kind);
	const struct safetensors_tensor *scale, *blocks, *tail, *hadamard;
	uint64_t vec = (uint64_t)d, any3[3] = { 0, 0, 0 }, any2[2] = { 0, 0 }, one = 1;
	int failed = 0;

	memset(t, 0, sizeof(*t));
	t->dim = d;
	snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.scale", l, site);
	scale = export_find(ckpt, name, SAFETENSORS_F32, 1, &vec, &failed, err);
	snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.blocks", l, site);
	blocks = failed ? NULL : export_find(ckpt, name, SAFETENSORS_F32, 3, any3, &failed, err);
	snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.blocks_tail", l, site);
	tail = failed ? NULL : export_find(ckpt, name, SAFETENSORS_F32, 2, any2, &failed, err);
	snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.hadamard_block", l, site);
	hadamard = failed ? NULL : export_find(ckpt, name, SAFETENSORS_I32, 1, &one, &failed, err);
	if (failed)
		return -1;

	if (scale != NULL) {
		t->scale = export_tensor_floats(scale);
		for (int i = 0; i < d; i++) {
			if (!isfinite(t->scale[i]) || t->scale[i] == 0.0f)
				return error_set(err, "%s: model.layers.%d.catscope.%s.scale has a zero, NaN "
						      "or Inf entry; the export is damaged", ckpt->dir, l, site);
		}
	}
	if (blocks != NULL || tail != NULL) {
		uint64_t k = blocks ? blocks->shape[1] : tail->shape[0];
		uint64_t full = blocks ? blocks->shape[0] : 0;
		uint64_t rest = tail ? tail->shape[0] : 0;

		/* Each size is bounded by d before the products, so that they cannot wrap and
		 * the block size fits the int it is stored in. A blocks tensor with no block
		 * would make its block size meaningless. */
		if (k == 0 || k > (uint64_t)d || full > (uint64_t)d || rest > (uint64_t)d ||
		    (blocks && (full == 0 || blocks->shape[2] != k)) || (tail && tail->shape[1] != rest) ||
		    full * k + rest != (uint64_t)d || (rest > 0 && blocks && rest >= k))
			return error_set(err, "%s: the blocks of model.layers.%d.catscope.%s (%" PRIu64 " of %"
					      PRIu64 " plus %" PRIu64 ") do not cover the width %d",
					 ckpt->dir, l, site, full, k, rest, d);
		t->dense_block = (int)k;
		t->dense = alloc_array((size_t)(full * k * k + rest * rest), sizeof(float));
		if (blocks)
			safetensors_tensor_to_f32(blocks, t->dense);
		if (tail)
			safetensors_tensor_to_f32(tail, t->dense + full * k * k);
		for (uint64_t i = 0; i < full * k * k + rest * rest; i++) {
			if (!isfinite(t->dense[i]))
				return error_set(err, "%s: the blocks of model.layers.%d.catscope.%s have NaN "
						      "or Inf entries; the export is damaged", ckpt->dir, l, site);
		}
	}
	if (hadamard != NULL) {
		int32_t k;

		memcpy(&k, hadamard->data, sizeof(k));
		if (k <= 0 || k > d)
			return error_set(err, "%s: model.layers.%d.catscope.%s.hadamard_block is %d, not "
					      "within 1..%d", ckpt->dir, l, site, (int)k, d);
		t->hadamard_block = k;
	}
	return 0;
}

static int
export_read_quant(const json_t *object, const char *key, const char *path,
		  struct quant_params *p, struct error *err)
{
	const json_t *o = json_object_get(object, key);
	const json_t *spec = json_object_get(o, "spec");

	if (!json_is_string(spec) || quant_params_parse(json_string_value(spec), p, err) != 0)
		return error_set(err, "%s: catscope.%s.spec is missing or invalid", path, key);
	return 0;
}

struct export_runtime *
export_runtime_open(const struct model *model, struct error *err)
{
	const struct model_config *c = &model->config;
	struct export_runtime *rt = alloc_zeroed(1, sizeof(*rt));
	struct safetensors_checkpoint *ckpt = NULL;
	char path[PATH_MAX];
	json_t *config, *cat;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/%s", model->path, EXPORT_CONFIG_FILE);
	config = jsonfile_load(path, JSON_REJECT_DUPLICATES, NULL);
	cat = json_object_get(config, "catscope");
	rt->model = model;
	rt->n_sites = c->n_layers * SITE_KIND_COUNT;
	rt->transforms = alloc_zeroed((size_t)rt->n_sites, sizeof(*rt->transforms));
	if (!json_is_object(cat)) {
		error_set(err, "%s: no \"catscope\" object; not a catscope export", path);
		goto out;
	}
	if (export_read_quant(cat, "input_activations", path, &rt->act, err) != 0)
		goto out;
	json_int_t kv_bits = json_integer_value(json_object_get(json_object_get(cat, "kv_cache"), "bits"));

	if (kv_bits != 0 && (kv_bits < QUANT_BITS_MIN || kv_bits > QUANT_BITS_MAX)) {
		error_set(err, "%s: catscope.kv_cache.bits is %d, not 0 or %d..%d", path, (int)kv_bits,
			  QUANT_BITS_MIN, QUANT_BITS_MAX);
		goto out;
	}
	export_kv_quant_init(&rt->kv, (int)kv_bits, c->head_dim);
	ckpt = safetensors_checkpoint_open(model->path, err);
	if (ckpt == NULL)
		goto out;
	for (int l = 0; l < c->n_layers; l++)
		for (int k = 0; k < SITE_KIND_COUNT; k++) {
			enum site_kind kind = (enum site_kind)k;

			if (export_read_transform(ckpt, l, kind, export_site_width(c, kind),
						  &rt->transforms[analysis_site_index(l, kind)], err) != 0)
				goto out;
		}
	rt->hooks.ctx = rt;
	rt->hooks.site = export_runtime_site_hook;
	rt->hooks.kv = export_runtime_kv_hook;
	rc = 0;
out:
	safetensors_checkpoint_close(ckpt);
	json_decref(config);
	if (rc != 0) {
		export_runtime_free(rt);
		return NULL;
	}
	return rt;
}

void
export_runtime_free(struct export_runtime *rt)
{
	if (rt == NULL)
		return;
	for (int i = 0; i < rt->n_sites; i++)
		transform_free(&rt->transforms[i]);
	free(rt->transforms);
	free(rt);
}
