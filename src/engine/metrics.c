/* Per-site diagnostics: concentration, alignment and its optima, predicted and measured
 * SQNR. The formulas are listed in metrics.h. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/log.h"
#include "catscope/metrics.h"
#include "catscope/parallel.h"

/* Column blocks for tr(Sw Sx), and token rows per measured-SQNR GEMM. */
#define TRACE_BLOCK 1024
#define MEASURE_CHUNK 512
#define FEW_TOKENS 16

/* Slots of engine_scratch. */
enum {
	SCRATCH_CLEAN,         /* a layer's weights with non-finite values as 0 */
	SCRATCH_WEIGHTS,       /* W T^-1 */
	SCRATCH_QUANTIZED,     /* Q(W T^-1) */
	SCRATCH_WEIGHT_ERROR,  /* W T^-1 - Q(W T^-1), for the parts */
	SCRATCH_SAMPLE_CLEAN,  /* the finite sample tokens, when some are not */
	SCRATCH_SAMPLE,        /* T x */
	SCRATCH_SAMPLE_Q,      /* Q(T x) */
	SCRATCH_SAMPLE_ERROR,  /* T x - Q(T x), for the parts */
	SCRATCH_OUTPUT_ERROR,  /* output errors of a chunk of tokens */
	SCRATCH_USED
};
_Static_assert(SCRATCH_USED <= ENGINE_SCRATCH_SLOTS, "engine_scratch has too few slots");

/* Site totals: signal, predicted weight and activation noise, ||W'||^2, sum of row
 * ranges^2, ||W||^2, measured signal, both, weight-only and activation-only noise. */
enum { SUM_SIGNAL, SUM_NOISE_W, SUM_NOISE_X, SUM_FROB_T, SUM_RANGE_SQ, SUM_FROB,
       SUM_MEAS_SIGNAL, SUM_MEAS_BOTH, SUM_MEAS_W, SUM_MEAS_X, SITE_SUMS };

void
engine_options_default(struct engine_options *opt)
{
	opt->full_limit = METRICS_FULL_LIMIT_DEFAULT;
	opt->best_block = 0;
	opt->measure_parts = true;
	opt->invariants = NULL;
	opt->scratch = NULL;
}

static void
release_outputs(struct engine_invariants *inv)
{
	for (int l = 0; l < SITE_LAYERS_MAX; l++) {
		free(inv->output[l]);
		inv->output[l] = NULL;
		inv->output_rows[l] = 0;
		inv->output_power[l] = 0;
	}
	inv->output_tokens = 0;
}

void
engine_invariants_release(struct engine_invariants *inv)
{
	release_outputs(inv);
	for (int i = 0; i < ENGINE_DIAGONALS_KEPT; i++) {
		free(inv->diagonal[i].diag);
		memset(&inv->diagonal[i], 0, sizeof(inv->diagonal[i]));
	}
}

size_t
engine_invariants_bytes(const struct engine_invariants *inv)
{
	size_t total = 0;

	for (int l = 0; l < SITE_LAYERS_MAX; l++)
		if (inv->output[l] != NULL)
			total += (size_t)inv->output_tokens * inv->output_rows[l] * sizeof(float);
	for (int i = 0; i < ENGINE_DIAGONALS_KEPT; i++)
		if (inv->diagonal[i].diag != NULL)
			total += (size_t)inv->diagonal[i].dim * sizeof(double);
	return total;
}

const double *
engine_invariants_diagonal(struct engine_invariants *inv, const struct transform_spec *spec,
			   int dim)
{
	for (int i = 0; i < ENGINE_DIAGONALS_KEPT; i++) {
		struct engine_diagonal *e = &inv->diagonal[i];

		if (e->diag != NULL && e->dim == dim && transform_spec_equal(&e->spec, spec)) {
			e->used = ++inv->diagonal_clock;
			return e->diag;
		}
	}
	return NULL;
}

void
engine_invariants_keep_diagonal(struct engine_invariants *inv,
				const struct transform_spec *spec, int dim, double *diag)
{
	struct engine_diagonal *slot = &inv->diagonal[0];

	for (int i = 0; i < ENGINE_DIAGONALS_KEPT; i++) {
		struct engine_diagonal *e = &inv->diagonal[i];

		if (e->diag != NULL && transform_spec_equal(&e->spec, spec)) {
			slot = e;
			break;
		}
		if (e->diag == NULL || (slot->diag != NULL && e->used < slot->used))
			slot = e;
	}
	free(slot->diag);
	slot->spec = *spec;
	slot->dim = dim;
	slot->diag = diag;
	slot->used = ++inv->diagonal_clock;
}

/* 10 log10(signal / noise); NaN when there is no signal or the noise is unknown (NaN),
 * +Inf when there is no noise. */
void
engine_scratch_release(struct engine_scratch *scratch)
{
	for (int i = 0; i < ENGINE_SCRATCH_SLOTS; i++)
		free(scratch->buffer[i]);
	memset(scratch, 0, sizeof(*scratch));
}

size_t
engine_scratch_bytes(const struct engine_scratch *scratch)
{
	size_t bytes = 0;

	for (int i = 0; i < ENGINE_SCRATCH_SLOTS; i++)
		bytes += scratch->count[i] * sizeof(float);
	return bytes;
}

/* A buffer of at least count floats from slot, grown when too small. The contents are
 * undefined. */
static float *
scratch_floats(struct engine_scratch *scratch, int slot, size_t count)
{
	if (scratch->count[slot] < count) {
		free(scratch->buffer[slot]);
		scratch->buffer[slot] = alloc_array(count > 0 ? count : 1, sizeof(float));
		scratch->count[slot] = count;
	}
	return scratch->buffer[slot];
}

static double
ratio_db(double signal, double noise)
{
	if (!(signal > 0) || isnan(noise))
		return NAN;
	if (!(noise > 0))
		return INFINITY;
	return 10.0 * log10(signal / noise);
}

/* 10 log10(12 N^2 C A), the factorised SQNR; +Inf when not quantized. */
static double
factorised_db(int bits, double c, double a)
{
	double n = (double)((1 << bits) - 1);

	if (bits == 0)
		return INFINITY;
	if (!(c > 0 && a > 0))
		return NAN;
	return 10.0 * log10(12.0 * n * n * c * a);
}

static double
parallel_db(double a_db, double b_db)
{
	if (isnan(a_db) || isnan(b_db))
		return NAN;
	return -10.0 * log10(pow(10.0, -a_db / 10) + pow(10.0, -b_db / 10));
}

static float
row_range(const float *v, int n, enum quant_mode mode)
{
	float lo = v[0], hi = v[0];

	/* Callers pass finite values only, so plain comparisons are exact and, unlike
	 * fminf and fmaxf (library calls at the baseline x86-64 target), inline. */
	for (int i = 1; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	if (mode == QUANT_SYMMETRIC)
		return 2 * (hi > -lo ? hi : -lo);
	return hi - lo;
}

/* tr(W^T W S) = sum_ij (W^T W)_ij S_ij over column-block pairs, using symmetry, so that
 * W^T W (d x d) is never stored whole. */
static double
trace_gram_product(const float *w, int rows, int d, const double *s)
{
	float *c = alloc_array((size_t)TRACE_BLOCK * TRACE_BLOCK, sizeof(*c));
	double total = 0;

	for (int b0 = 0; b0 < d; b0 += TRACE_BLOCK) {
		int nb = b0 + TRACE_BLOCK <= d ? TRACE_BLOCK : d - b0;

		for (int c0 = b0; c0 < d; c0 += TRACE_BLOCK) {
			int nc = c0 + TRACE_BLOCK <= d ? TRACE_BLOCK : d - c0;
			double part = 0;

			linalg_sgemm(true, false, nb, nc, rows, 1.0f, w + b0, d, w + c0, d, 0.0f, c,
				     nc);
			for (int i = 0; i < nb; i++)
				for (int j = 0; j < nc; j++)
					part += c[i * nc + j] * s[(int64_t)(b0 + i) * d + c0 + j];
			total += c0 == b0 ? part : 2 * part;
		}
	}
	free(c);
	return total;
}

/* tr (Sx_bb^1/2 Sw_bb Sx_bb^1/2)^1/2 for columns [start, start + s): the sum of the
 * singular values of W_b L_b with L_b L_b^T = Sx_bb (plus a tiny ridge when Sx_bb is
 * singular), over all layers stacked. Returns NaN if the factorisation keeps failing. */
static double
trace_root(const float *const *w, const int *rows, int n_layers, int d, const double *sx,
	   int start, int s)
{
	int total_rows = 0;
	double *l = alloc_array((size_t)s * s, sizeof(*l));
	double *y, *g, *eig;
	double mean, result = 0;
	int gram, ok = 0;

	for (int k = 0; k < n_layers; k++)
		total_rows += rows[k];
	for (int64_t i = 0; i < s; i++)
		memcpy(l + i * s, sx + (start + i) * d + start, sizeof(*l) * s);
	mean = linalg_mean_diag(s, l, s);
	if (!(mean > 0)) {
		free(l);
		return 0;
	}
	for (int attempt = 0; attempt < 4 && !ok; attempt++) {
		double ridge = mean * pow(10.0, -12 + 2 * attempt);

		for (int64_t i = 0; i < s; i++)
			memcpy(l + i * s, sx + (start + i) * d + start, sizeof(*l) * s);
		for (int64_t i = 0; i < s; i++)
			l[i * s + i] += ridge;
		ok = linalg_cholesky(s, l, NULL) == 0;
	}
	if (!ok) {
		free(l);
		return NAN;
	}

	y = alloc_array((size_t)total_rows * s, sizeof(*y));
	for (int k = 0, at = 0; k < n_layers; at += rows[k], k++)
		for (int64_t r = 0; r < rows[k]; r++)
			for (int i = 0; i < s; i++)
				y[(at + r) * s + i] = w[k][r * d + start + i];
	linalg_dtrmm_right_lower(total_rows, s, l, s, y, s);
	gram = total_rows < s ? total_rows : s;
	g = alloc_array((size_t)gram * gram, sizeof(*g));
	eig = alloc_array(gram, sizeof(*eig));
	if (total_rows >= s)
		linalg_dsyrk_t(s, total_rows, 1.0, y, s, 0.0, g, s);
	else
		linalg_dsyrk_n(total_rows, s, 1.0, y, s, 0.0, g, total_rows);
	if (linalg_sym_eig(gram, g, eig, false, NULL) < 0)
		result = NAN;
	else
		for (int i = 0; i < gram; i++)
			result += sqrt(eig[i] > 0 ? eig[i] : 0);
	free(l);
	free(y);
	free(g);
	free(eig);
	return result;
}

int
engine_quantize_weights(float *w, int rows, int dim, const float *sigma_t,
			const struct quant_config *qc, unsigned *flags, struct error *err)
{
	float *row_clip = NULL;
	int rc = 0;

	if (qc->weight.bits == 0)
		return 0;
	if ((qc->clip_search || qc->rounding == QUANT_GPTQ) && sigma_t == NULL)
		return error_set(err, "clip search and GPTQ need the transformed second moment");
	if (qc->clip_search) {
		row_clip = alloc_array(rows, sizeof(*row_clip));
		quant_clip_search(w, rows, dim, sigma_t, &qc->weight, row_clip);
	}
	if (qc->rounding == QUANT_GPTQ) {
		double *h = alloc_array((size_t)dim * dim, sizeof(*h));

		for (int64_t i = 0; i < (int64_t)dim * dim; i++)
			h[i] = sigma_t[i];
		rc = quant_gptq(w, rows, dim, h, &qc->weight, row_clip, qc->gptq_damp, flags, err);
		free(h);
	} else {
		quant_fake_rows(w, rows, dim, dim, &qc->weight, row_clip);
	}
	free(row_clip);
	return rc;
}

/* Working state of one evaluation. */
struct evaluation {
	const struct site_stats *stats;
	const struct site_layers *layers;
	struct engine_invariants *invariants; /* NULL, or reused and filled */
	const struct transform *t;
	const struct quant_config *qc;
	bool parts;            /* measure weight-only and activation-only noise too */
	int d;
	unsigned flags;
	float *sx_t;           /* T Sx T^T, only for clip search and GPTQ */
	double *diag_t;        /* d: the diagonal of T Sx T^T */
	double trace_x, trace_xt;
	double c_x;            /* C(T x), NaN without a sample */
	struct engine_scratch *scratch;
	/* The finite sample tokens before the transform, the transformed tokens and
	 * their quantized copy, n x d each. Scratch or the stored sample, never owned:
	 * xt is x for the identity, and xq is xt without activation quantization. */
	const float *x, *xt, *xq;
	const float *dx;       /* xt - xq, only when measuring the parts */
	int n;
	bool outputs_ready;    /* the invariants keep Y of every layer for this sample */
	double *act_var;       /* d: E[Delta_g(i)^2] / 12 over tokens */
	/* Copies with non-finite weights as 0, made on demand for layers that have any. */
	float *clean[SITE_LAYERS_MAX];
	float *output[SITE_LAYERS_MAX]; /* Y when not kept in the invariants */
	int rows[SITE_LAYERS_MAX];
};

/* Copies n weights, replacing NaN and Inf by 0 so that one bad value does not hide the
 * rest. Returns METRICS_FLAG_NONFINITE_WEIGHT if it replaced any. */
static unsigned
copy_finite(const float *w, size_t n, float *out)
{
	unsigned flags = 0;

	for (size_t i = 0; i < n; i++) {
		out[i] = w[i];
		if (!isfinite(out[i])) {
			out[i] = 0;
			flags = METRICS_FLAG_NONFINITE_WEIGHT;
		}
	}
	return flags;
}

/* Without an early exit, so that the loop vectorizes. */
static bool
all_finite(const float *v, int64_t n)
{
	int finite = 1;

	for (int64_t i = 0; i < n; i++)
		finite &= isfinite(v[i]) != 0;
	return finite;
}

static const float *
clean_weights(struct evaluation *ev, int l)
{
	const struct site_layer *layer = &ev->layers->layer[l];
	size_t size = (size_t)layer->rows * ev->d;

	if (ev->clean[l] == NULL) {
		if (all_finite(layer->weight, (int64_t)size))
			return layer->weight;

		ev->clean[l] = alloc_array(size, sizeof(*ev->clean[l]));
		copy_finite(layer->weight, size, ev->clean[l]);
	}
	return ev->clean[l];
}

/* The layer's weights with non-finite values as 0: the layer's own array when it is
 * finite (known from the invariants or checked), else a cleaned copy in scratch. */
static const float *
finite_weights(struct evaluation *ev, int l, unsigned *flags)
{
	const struct site_layer *layer = &ev->layers->layer[l];
	const struct engine_invariants *inv = ev->invariants;
	size_t size = (size_t)layer->rows * ev->d;
	float *clean;

	if (inv != NULL && inv->has_signal) {
		if (!(inv->layer_flags[l] & METRICS_FLAG_NONFINITE_WEIGHT))
			return layer->weight;
	} else if (all_finite(layer->weight, (int64_t)size)) {
		return layer->weight;
	}
	clean = scratch_floats(ev->scratch, SCRATCH_CLEAN, size);
	*flags |= copy_finite(layer->weight, size, clean);
	return clean;
}

/* True when the invariants keep the outputs of every layer for this sample. */
static bool
outputs_kept(const struct evaluation *ev)
{
	const struct engine_invariants *inv = ev->invariants;

	if (inv == NULL || !inv->has_signal || inv->output_tokens != ev->n)
		return false;
	for (int l = 0; l < ev->layers->count; l++)
		if (inv->output[l] == NULL || inv->output_rows[l] != ev->layers->layer[l].rows)
			return false;
	return true;
}

/* Eight running sums instead of one: the additions then overlap and vectorize instead
 * of waiting on each other. */
static double
sum_squares(const float *v, int64_t n)
{
	double lane[8] = { 0 }, total = 0;
	int64_t i = 0;

	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			lane[j] += (double)v[i + j] * v[i + j];
	for (; i < n; i++)
		total += (double)v[i] * v[i];
	for (int j = 0; j < 8; j++)
		total += lane[j];
	return total;
}

/* The squared error the grid (step, zero) makes on v: the rounding noise step^2 / 12
 * inside its end codes, and the exact distance to the nearest end code beyond them,
 * which a clipping ratio below 1 makes large. */
static double
element_noise(float v, const struct quant_params *p, float step, int32_t zero)
{
	double lo, hi, half = 0.5 * step;

	if (p->mode == QUANT_SYMMETRIC) {
		lo = -(double)(1 << (p->bits - 1)) * step;
		hi = (double)((1 << (p->bits - 1)) - 1) * step;
	} else {
		lo = -(double)zero * step;
		hi = (double)((1 << p->bits) - 1 - zero) * step;
	}
	if (v > hi + half)
		return (v - hi) * (v - hi);
	if (v < lo - half)
		return (v - lo) * (v - lo);
	return (double)step * step / 12;
}

/* One pass over the transformed sample, split by tokens: C(T x), the activation noise
 * per channel and the quantized copy, from one step per group. */
struct sample_pass {
	const struct evaluation *ev;
	const float *xt;
	float *xq;
	double norm[PARALLEL_PARTS], range[PARALLEL_PARTS];
	bool constant[PARALLEL_PARTS];
	double *act_var;       /* parts x d */
};

static void
sample_pass_part(void *ctx, int part, int64_t begin, int64_t end)
{
	struct sample_pass *sp = ctx;
	const struct quant_params *ap = &sp->ev->qc->act;
	int d = sp->ev->d, n = sp->ev->n;
	int groups = ap->bits > 0 ? quant_group_count(ap, d) : 0;
	int g_size = groups == 1 ? d : ap->group_size;
	double *var_sum = sp->act_var + (int64_t)part * d;
	double norm_sum = 0, range_sum = 0;
	bool constant = false;

	memset(var_sum, 0, sizeof(*var_sum) * d);
	for (int64_t tok = begin; tok < end; tok++) {
		const float *x = sp->xt + tok * d;
		/* Without activation quantization xq is NULL, and C makes even NULL + 0
		 * undefined. */
		float *xq = sp->xq != NULL ? sp->xq + tok * d : NULL;
		float range = row_range(x, d, ap->mode);

		norm_sum += sum_squares(x, d);
		range_sum += (double)range * range;
		constant |= range == 0;
		for (int g = 0; g < groups; g++) {
			int start = g * g_size, len = start + g_size <= d ? g_size : d - start;
			float step, group_range;
			int32_t zero;
			double var;

			quant_group_step_range(x + start, len, ap, 0, &step, &zero, &group_range);
			quant_fake_group(x + start, xq + start, len, ap, step, zero);
			/* A zero-range group is reproduced exactly: no noise. */
			if (!(group_range > 0))
				continue;
			if (ap->clip < 1) {
				for (int i = start; i < start + len; i++)
					var_sum[i] += element_noise(x[i], ap, step, zero) / n;
				continue;
			}
			var = (double)step * step / 12 / n;
			for (int i = start; i < start + len; i++)
				var_sum[i] += var;
		}
	}
	sp->norm[part] = norm_sum;
	sp->range[part] = range_sum;
	sp->constant[part] = constant;
}

/* The finite sample tokens: the stored sample itself when every token is finite, else
 * a compacted copy in scratch. Sets ev->n. */
static const float *
finite_sample(struct evaluation *ev)
{
	const struct site_stats *st = ev->stats;
	int d = ev->d, n = 0;
	float *finite;

	if (all_finite(st->sample, (int64_t)st->n_sample * d)) {
		ev->n = st->n_sample;
		return st->sample;
	}
	ev->flags |= METRICS_FLAG_NONFINITE_SAMPLE;
	finite = scratch_floats(ev->scratch, SCRATCH_SAMPLE_CLEAN, (size_t)st->n_sample * d);
	for (int tok = 0; tok < st->n_sample; tok++) {
		const float *x = st->sample + (int64_t)tok * d;

		if (!all_finite(x, d))
			continue;
		memcpy(finite + (int64_t)n * d, x, sizeof(*x) * d);
		n++;
	}
	ev->n = n;
	return finite;
}

/* Transforms and quantizes the finite sample tokens, and derives C(T x) and the
 * activation noise per channel. */
static void
prepare_sample(struct evaluation *ev, struct site_result *out)
{
	const struct site_stats *st = ev->stats;
	const struct quant_params *ap = &ev->qc->act;
	int d = ev->d, n, parts;
	struct sample_pass sp = { .ev = ev };
	double norm_sum = 0, range_sum = 0;

	ev->act_var = alloc_zeroed(d, sizeof(*ev->act_var));
	ev->n = 0;
	if (st->n_sample > 0 && st->sample != NULL)
		ev->x = finite_sample(ev);
	n = out->tokens_used = ev->n;
	if (n == 0) {
		ev->flags |= METRICS_FLAG_NO_SAMPLE;
		out->c_x = ev->c_x = NAN;
		/* Without a transform the statistics give the per-token steps directly. */
		if (ev->t->spec.kind == TRANSFORM_NONE && ap->group_size == 0 && ap->bits > 0) {
			double levels = (1 << ap->bits) - 1;
			double range_sq = ap->mode == QUANT_SYMMETRIC ? st->mean_sq_range_sym
								       : st->mean_sq_range_asym;

			for (int i = 0; i < d; i++)
				ev->act_var[i] = range_sq * ap->clip * ap->clip / (levels * levels) / 12;
		} else if (ap->bits > 0) {
			for (int i = 0; i < d; i++)
				ev->act_var[i] = NAN;
		}
		return;
	}
	if (n < FEW_TOKENS)
		ev->flags |= METRICS_FLAG_FEW_TOKENS;
	ev->outputs_ready = outputs_kept(ev);
	if (!ev->outputs_ready && ev->invariants != NULL) {
		release_outputs(ev->invariants);
		ev->invariants->output_tokens = n;
	}
	if (transform_is_identity(ev->t)) {
		ev->xt = ev->x;
	} else {
		float *xt = scratch_floats(ev->scratch, SCRATCH_SAMPLE, (size_t)n * d);

		transform_apply_activations_to(ev->t, ev->x, xt, n);
		ev->xt = xt;
	}

	/* Without activation quantization the quantized copy is the sample itself. */
	ev->xq = ev->xt;
	if (ap->bits > 0)
		ev->xq = sp.xq = scratch_floats(ev->scratch, SCRATCH_SAMPLE_Q, (size_t)n * d);
	sp.xt = ev->xt;
	parts = parallel_parts(n, (int64_t)n * d);
	sp.act_var = alloc_array((size_t)parts * d, sizeof(*sp.act_var));
	parallel_for(n, parts, sample_pass_part, &sp);
	for (int p = 0; p < parts; p++) {
		norm_sum += sp.norm[p];
		range_sum += sp.range[p];
		if (sp.constant[p])
			ev->flags |= METRICS_FLAG_CONSTANT_TOKEN;
		for (int i = 0; i < d; i++)
			ev->act_var[i] += sp.act_var[(int64_t)p * d + i];
	}
	free(sp.act_var);
	out->c_x = ev->c_x = range_sum > 0 ? norm_sum / range_sum : NAN;
	if (!(range_sum > 0))
		ev->flags |= METRICS_FLAG_CONSTANT_TOKEN;
	if (ev->parts) {
		float *dx = scratch_floats(ev->scratch, SCRATCH_SAMPLE_ERROR, (size_t)n * d);

		for (int64_t i = 0; i < (int64_t)n * d; i++)
			dx[i] = ev->xt[i] - ev->xq[i];
		ev->dx = dx;
	}
}

/* Y = X W^T of the layer on the untransformed sample, and ||Y||^2; kept in the
 * invariants when there are some. w is the layer with non-finite weights as 0. */
static const float *
layer_outputs(struct evaluation *ev, int l, const float *w, int rows, double *power)
{
	struct engine_invariants *inv = ev->invariants;
	float *y;

	if (ev->outputs_ready) {
		*power = inv->output_power[l];
		return inv->output[l];
	}
	y = alloc_array((size_t)ev->n * rows, sizeof(*y));
	linalg_sgemm(false, true, ev->n, rows, ev->d, 1.0f, ev->x, ev->d, w, ev->d, 0.0f, y, rows);
	*power = sum_squares(y, (int64_t)ev->n * rows);
	if (inv != NULL) {
		free(inv->output[l]);
		inv->output[l] = y;
		inv->output_rows[l] = rows;
		inv->output_power[l] = *power;
	} else {
		ev->output[l] = y;
	}
	return y;
}

/* Squared errors over the sample: [1] weight-only, [2] activation-only and [3] both,
 * with [0] the signal ||Y||^2. Both quantized is Y - Q(X') Q(W')^T, one product
 * because Y = X W^T = X' W'^T does not depend on the transform. Without the parts
 * [1] and [2] are NaN. */
static void
measure_layer(struct evaluation *ev, const float *y, double power, const float *wt,
	      const float *q, int rows, double sums[4])
{
	int d = ev->d;
	float *e = scratch_floats(ev->scratch, SCRATCH_OUTPUT_ERROR, (size_t)MEASURE_CHUNK * rows);
	float *dw = NULL;

	sums[0] = power;
	sums[1] = sums[2] = ev->parts ? 0 : NAN;
	sums[3] = 0;
	if (ev->parts) {
		dw = scratch_floats(ev->scratch, SCRATCH_WEIGHT_ERROR, (size_t)rows * d);
		for (int64_t i = 0; i < (int64_t)rows * d; i++)
			dw[i] = wt[i] - q[i];
	}
	for (int t0 = 0; t0 < ev->n; t0 += MEASURE_CHUNK) {
		int nt = t0 + MEASURE_CHUNK <= ev->n ? MEASURE_CHUNK : ev->n - t0;
		int64_t size = (int64_t)nt * rows;

		memcpy(e, y + (int64_t)t0 * rows, sizeof(*e) * size);
		linalg_sgemm(false, true, nt, rows, d, -1.0f, ev->xq + (int64_t)t0 * d, d, q, d,
			     1.0f, e, rows);
		sums[3] += sum_squares(e, size);
		if (!ev->parts)
			continue;
		linalg_sgemm(false, true, nt, rows, d, 1.0f, ev->xt + (int64_t)t0 * d, d, dw, d,
			     0.0f, e, rows);
		sums[1] += sum_squares(e, size);
		linalg_sgemm(false, true, nt, rows, d, 1.0f, ev->dx + (int64_t)t0 * d, d, wt, d,
			     0.0f, e, rows);
		sums[2] += sum_squares(e, size);
	}
}

/* One pass over the transformed weights W' of a layer, split by rows: the column norms
 * ||W'_:,i||^2, the squared row ranges for C(W'), the predicted weight noise
 * sum_r sum_i Delta_{r,g(i)}^2 / 12 * (T Sx T^T)_ii and, with q not NULL, the RTN of
 * W' from the same steps. Each row is read once, while it is in cache. */
struct weight_pass {
	const struct evaluation *ev;
	const float *wt;
	float *q;
	const float *row_clip; /* per row, or NULL */
	const double *group_diag; /* the diagonal summed per group */
	double range_sq[PARALLEL_PARTS], noise[PARALLEL_PARTS];
	double *col_norm;      /* parts x d */
};

static double
row_weight_noise(const struct weight_pass *wp, const float *row, float *q, float row_clip)
{
	const struct evaluation *ev = wp->ev;
	const struct quant_params *p = &ev->qc->weight;
	int d = ev->d, groups = quant_group_count(p, d);
	int g_size = groups == 1 ? d : p->group_size;
	double total = 0;

	for (int g = 0; g < groups; g++) {
		int start = g * g_size, len = start + g_size <= d ? g_size : d - start;
		float step, range;
		int32_t zero;

		quant_group_step_range(row + start, len, p, row_clip, &step, &zero, &range);
		if (q != NULL)
			quant_fake_group(row + start, q + start, len, p, step, zero);
		/* A group of range 0 is reproduced exactly. */
		if (!(range > 0))
			continue;
		if ((row_clip > 0 ? row_clip : p->clip) < 1) {
			for (int i = 0; i < len; i++)
				total += element_noise(row[start + i], p, step, zero) *
					 ev->diag_t[start + i];
			continue;
		}
		total += (double)step * step / 12 * wp->group_diag[g];
	}
	return total;
}

static void
weight_pass_part(void *ctx, int part, int64_t begin, int64_t end)
{
	struct weight_pass *wp = ctx;
	const struct quant_params *p = &wp->ev->qc->weight;
	int d = wp->ev->d;
	double *col = wp->col_norm + (int64_t)part * d;
	double range_sq = 0, noise = 0;

	memset(col, 0, sizeof(*col) * d);
	for (int64_t r = begin; r < end; r++) {
		const float *row = wp->wt + r * d;
		float range = row_range(row, d, p->mode);

		range_sq += (double)range * range;
		for (int i = 0; i < d; i++)
			col[i] += (double)row[i] * row[i];
		if (p->bits > 0)
			noise += row_weight_noise(wp, row, wp->q != NULL ? wp->q + r * d : NULL,
						  wp->row_clip != NULL ? wp->row_clip[r] : 0);
	}
	wp->range_sq[part] = range_sq;
	wp->noise[part] = noise;
}

/* Runs the weight pass over rows rows and adds its per-part results in part order:
 * col_norm (d), and range_sq and noise_w. */
static void
weight_pass_run(struct weight_pass *wp, int rows, double *col_norm, double *range_sq,
		double *noise_w)
{
	const struct quant_params *p = &wp->ev->qc->weight;
	int d = wp->ev->d, parts = parallel_parts(rows, (int64_t)rows * d);
	double *group_diag = NULL;

	if (p->bits > 0) {
		int groups = quant_group_count(p, d), g_size = groups == 1 ? d : p->group_size;

		group_diag = alloc_zeroed(groups, sizeof(*group_diag));
		for (int i = 0; i < d; i++)
			group_diag[i / g_size] += wp->ev->diag_t[i];
	}
	wp->group_diag = group_diag;
	wp->col_norm = alloc_array((size_t)parts * d, sizeof(*wp->col_norm));
	parallel_for(rows, parts, weight_pass_part, wp);
	memset(col_norm, 0, sizeof(*col_norm) * d);
	*range_sq = *noise_w = 0;
	for (int part = 0; part < parts; part++) {
		*range_sq += wp->range_sq[part];
		*noise_w += wp->noise[part];
		for (int i = 0; i < d; i++)
			col_norm[i] += wp->col_norm[(int64_t)part * d + i];
	}
	free(wp->col_norm);
	free(group_diag);
}

/* The layer's signal, ||W||_F^2 and weight flags, from the invariants when kept. */
static void
layer_invariants(struct evaluation *ev, int l, const float *w, struct layer_result *lr,
		 double *frob)
{
	struct engine_invariants *inv = ev->invariants;
	int d = ev->d, rows = ev->layers->layer[l].rows;

	if (inv != NULL && inv->has_signal) {
		lr->signal = inv->signal[l];
		*frob = inv->frobenius[l];
		lr->flags |= inv->layer_flags[l];
		return;
	}
	*frob = 0;
	for (int64_t r = 0; r < rows; r++) {
		double row_norm = sum_squares(w + r * d, d);

		if (row_norm == 0)
			lr->flags |= METRICS_FLAG_ZERO_ROW;
		*frob += row_norm;
	}
	lr->signal = trace_gram_product(w, rows, d, ev->stats->second_moment);
	if (inv != NULL) {
		inv->signal[l] = lr->signal;
		inv->frobenius[l] = *frob;
		inv->layer_flags[l] = lr->flags;
	}
}

static int
evaluate_layer(struct evaluation *ev, int l, const struct site_layer *layer,
	       struct layer_result *lr, double site_sums[SITE_SUMS], double *col_norm, struct error *err)
{
	const struct quant_config *qc = ev->qc;
	int d = ev->d, rows = layer->rows;
	size_t size = (size_t)rows * d;
	struct weight_pass wp = { .ev = ev };
	const float *w, *wt, *q, *y = NULL;
	float *quantized = NULL, *row_clip = NULL;
	double frob, frob_t = 0, range_sq, noise_w, noise_x = 0, meas[4] = { 0 };
	double power = 0;
	unsigned qflags = 0;

	ev->rows[l] = rows;
	lr->name = layer->name;
	lr->rows = rows;
	w = finite_weights(ev, l, &lr->flags);
	layer_invariants(ev, l, w, lr, &frob);
	/* Y comes from the weights before the transform. */
	if (ev->n > 0)
		y = layer_outputs(ev, l, w, rows, &power);

	wt = w;
	if (!transform_is_identity(ev->t)) {
		float *moved = scratch_floats(ev->scratch, SCRATCH_WEIGHTS, size);

		transform_apply_weights_to(ev->t, w, moved, rows);
		wt = moved;
	}

	/* Quantize as engine_quantize_weights does, keeping the clip ratios for the
	 * prediction. RTN runs inside the weight pass, GPTQ after it. */
	q = wt;
	wp.wt = wt;
	if (qc->weight.bits > 0) {
		quantized = scratch_floats(ev->scratch, SCRATCH_QUANTIZED, size);
		q = quantized;
		if (qc->rounding == QUANT_GPTQ)
			memcpy(quantized, wt, size * sizeof(*quantized));
		else
			wp.q = quantized;
		if (qc->clip_search) {
			row_clip = alloc_array(rows, sizeof(*row_clip));
			quant_clip_search(wt, rows, d, ev->sx_t, &qc->weight, row_clip);
		}
	}
	wp.row_clip = row_clip;
	/* NOTE: the predicted weight noise is the RTN noise model even under GPTQ, whose
	 * error feedback makes the real noise smaller and correlated with the input. */
	weight_pass_run(&wp, rows, col_norm, &range_sq, &noise_w);
	if (qc->weight.bits > 0 && qc->rounding == QUANT_GPTQ) {
		double *h = alloc_array((size_t)d * d, sizeof(*h));
		int rc;

		for (int64_t i = 0; i < (int64_t)d * d; i++)
			h[i] = ev->sx_t[i];
		rc = quant_gptq(quantized, rows, d, h, &qc->weight, row_clip, qc->gptq_damp,
				&qflags, err);
		free(h);
		if (rc < 0) {
			error_prefix(err, "%s", layer->name ? layer->name : "layer");
			free(row_clip);
			return -1;
		}
		if (qflags & QUANT_FLAG_HESSIAN_DAMPED)
			lr->flags |= METRICS_FLAG_HESSIAN_DAMPED;
	}
	for (int i = 0; i < d; i++) {
		frob_t += col_norm[i];
		noise_x += col_norm[i] * ev->act_var[i];
	}
	if (qc->act.bits == 0)
		noise_x = 0;
	lr->c_w = range_sq > 0 ? frob_t / range_sq : NAN;
	lr->alignment = lr->signal > 0 ? lr->signal / (frob_t * ev->trace_xt) : NAN;
	lr->predicted.weight_db = ratio_db(lr->signal, noise_w);
	lr->predicted.act_db = ratio_db(lr->signal, noise_x);
	lr->predicted.total_db = ratio_db(lr->signal, noise_w + noise_x);
	lr->factorised.weight_db = factorised_db(qc->weight.bits, lr->c_w, lr->alignment);
	lr->factorised.act_db = factorised_db(qc->act.bits, ev->c_x, lr->alignment);
	lr->factorised.total_db = parallel_db(lr->factorised.weight_db, lr->factorised.act_db);

	if (ev->n > 0)
		measure_layer(ev, y, power, wt, q, rows, meas);
	lr->measured.weight_db = ev->n > 0 ? ratio_db(meas[0], meas[1]) : NAN;
	lr->measured.act_db = ev->n > 0 ? ratio_db(meas[0], meas[2]) : NAN;
	lr->measured.total_db = ev->n > 0 ? ratio_db(meas[0], meas[3]) : NAN;
	lr->gap_db = lr->measured.total_db - lr->predicted.total_db;
	if (!(lr->signal > 0))
		lr->flags |= METRICS_FLAG_ZERO_SIGNAL;

	site_sums[SUM_SIGNAL] += lr->signal;
	site_sums[SUM_NOISE_W] += noise_w;
	site_sums[SUM_NOISE_X] += noise_x;
	site_sums[SUM_FROB_T] += frob_t;
	site_sums[SUM_RANGE_SQ] += range_sq;
	site_sums[SUM_FROB] += frob;
	site_sums[SUM_MEAS_SIGNAL] += meas[0];
	site_sums[SUM_MEAS_BOTH] += meas[3];
	site_sums[SUM_MEAS_W] += meas[1];
	site_sums[SUM_MEAS_X] += meas[2];
	free(row_clip);
	return 0;
}

/* A*_1, A*_k and (when affordable) A* of the whole site. */
static void
best_alignments(struct evaluation *ev, const struct engine_options *opt, int n_layers,
		double signal, struct site_result *out)
{
	int d = ev->d, k = opt->best_block;
	const float *clean[SITE_LAYERS_MAX];
	double *sw_diag;
	double sum = 0, roots = 0;

	if (k <= 0)
		k = ev->t->spec.kind == TRANSFORM_CAT && ev->t->dense_block > 1
			    ? ev->t->dense_block : TRANSFORM_DEFAULT_BLOCK;
	if (k > d)
		k = d;
	out->best_block = k;
	if (d > opt->full_limit)
		ev->flags |= METRICS_FLAG_FULL_SKIPPED;
	if (ev->invariants != NULL && ev->invariants->best_block == k &&
	    ev->invariants->full_limit == opt->full_limit) {
		out->best_1 = ev->invariants->best_1;
		out->best_k = ev->invariants->best_k;
		out->best_full = ev->invariants->best_full;
		return;
	}

	sw_diag = alloc_zeroed(d, sizeof(*sw_diag));
	for (int l = 0; l < n_layers; l++) {
		clean[l] = clean_weights(ev, l);
		for (int64_t r = 0; r < ev->rows[l]; r++)
			for (int i = 0; i < d; i++)
				sw_diag[i] += (double)clean[l][r * d + i] * clean[l][r * d + i];
	}
	for (int i = 0; i < d; i++)
		sum += sqrt(sw_diag[i] * ev->stats->second_moment[(int64_t)i * d + i]);
	out->best_1 = sum > 0 ? signal / (sum * sum) : NAN;
	free(sw_diag);

	for (int start = 0; start < d; start += k)
		roots += trace_root(clean, ev->rows, n_layers, d, ev->stats->second_moment, start,
				    start + k <= d ? k : d - start);
	out->best_k = roots > 0 ? signal / (roots * roots) : NAN;

	if (d > opt->full_limit) {
		out->best_full = NAN;
	} else {
		roots = trace_root(clean, ev->rows, n_layers, d, ev->stats->second_moment, 0, d);
		out->best_full = roots > 0 ? signal / (roots * roots) : NAN;
	}
	if (ev->invariants != NULL) {
		ev->invariants->best_block = k;
		ev->invariants->full_limit = opt->full_limit;
		ev->invariants->best_1 = out->best_1;
		ev->invariants->best_k = out->best_k;
		ev->invariants->best_full = out->best_full;
	}
}

static void
warn_flags(unsigned flags, const struct site_layers *layers, int dim)
{
	static const struct {
		unsigned flag;
		const char *text;
	} names[] = {
		{ METRICS_FLAG_NONFINITE_WEIGHT, "NaN or Inf weights (counted as 0)" },
		{ METRICS_FLAG_NONFINITE_SAMPLE, "NaN or Inf sample tokens (skipped)" },
		{ METRICS_FLAG_ZERO_ROW, "all-zero weight rows" },
		{ METRICS_FLAG_ZERO_CHANNEL, "input channels that are always zero" },
		{ METRICS_FLAG_CONSTANT_TOKEN, "constant sample tokens" },
		{ METRICS_FLAG_NO_SAMPLE, "no sample tokens (no measured SQNR)" },
		{ METRICS_FLAG_ZERO_SIGNAL, "zero output signal (SQNR undefined)" },
		{ METRICS_FLAG_HESSIAN_DAMPED, "a Hessian that needed more dampening" },
		{ METRICS_FLAG_TRANSFORM_DEGENERATE, "channels the transform left unscaled" },
		{ METRICS_FLAG_FEW_TOKENS, "fewer than 16 sample tokens" },
	};

	const char *name = layers->count > 0 && layers->layer[0].name ? layers->layer[0].name : "?";

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flags & names[i].flag)
			log_warn("site read by %s (width %d) has %s", name, dim, names[i].text);
}

static void
evaluation_free(struct evaluation *ev)
{
	free(ev->sx_t);
	free(ev->diag_t);
	free(ev->act_var);
	for (int l = 0; l < SITE_LAYERS_MAX; l++) {
		free(ev->clean[l]);
		free(ev->output[l]);
	}
}

int
engine_evaluate_transform(const struct site_stats *stats, const struct site_layers *layers,
			  const struct transform *t, const struct quant_config *qc,
			  const struct engine_options *opt, struct site_result *out,
			  struct error *err)
{
	struct engine_options defaults;
	struct engine_scratch own_scratch = { 0 };
	struct evaluation ev = { .stats = stats, .layers = layers, .t = t, .qc = qc,
				 .d = stats->dim };

	double sums[SITE_SUMS] = { 0 };
	double *col_norm;
	int d = stats->dim, rc = -1;

	if (opt == NULL) {
		engine_options_default(&defaults);
		opt = &defaults;
	}
	ev.invariants = opt->invariants;
	ev.parts = opt->measure_parts;
	ev.scratch = opt->scratch != NULL ? opt->scratch : &own_scratch;
	if (ev.invariants != NULL && !ev.invariants->has_signal)
		engine_invariants_release(ev.invariants);
	memset(out, 0, sizeof(*out));
	out->dim = d;
	if (stats->second_moment == NULL)
		return error_set(err, "site statistics have no second moment; run calibration");
	if (t->dim != d)
		return error_set(err, "transform width %d does not match the site width %d", t->dim,
				 d);
	if (site_layers_check(layers, d, err) < 0)
		return -1;
	if (quant_params_check(&qc->weight, err) < 0 || quant_params_check(&qc->act, err) < 0)
		return -1;
	/* Invariants are kept only for statistics that passed this check. */
	if (ev.invariants == NULL || !ev.invariants->has_signal)
		for (int64_t i = 0; i < (int64_t)d * d; i++)
			if (!isfinite(stats->second_moment[i]))
				return error_set(err, "second moment of the site has NaN or Inf at "
						      "(%d, %d); recalibrate", (int)(i / d), (int)(i % d));

	/* Sx, its transformed version and their traces. */
	ev.diag_t = alloc_array(d, sizeof(*ev.diag_t));
	{
		const double *stored = ev.invariants != NULL
					     ? engine_invariants_diagonal(ev.invariants, &t->spec, d)
					     : NULL;

		if (stored != NULL) {
			memcpy(ev.diag_t, stored, sizeof(*ev.diag_t) * d);
		} else {
			transform_conjugate_diagonal(t, stats->second_moment, ev.diag_t);
			if (ev.invariants != NULL) {
				double *copy = alloc_array(d, sizeof(*copy));

				memcpy(copy, ev.diag_t, sizeof(*copy) * d);
				engine_invariants_keep_diagonal(ev.invariants, &t->spec, d, copy);
			}
		}
	}
	if (qc->weight.bits > 0 && (qc->clip_search || qc->rounding == QUANT_GPTQ)) {
		ev.sx_t = alloc_array((size_t)d * d, sizeof(*ev.sx_t));
		transform_conjugate(t, stats->second_moment, ev.sx_t);
	}
	for (int64_t i = 0; i < d; i++) {
		ev.trace_x += stats->second_moment[i * d + i];
		ev.trace_xt += ev.diag_t[i];
		if (stats->second_moment[i * d + i] == 0)
			ev.flags |= METRICS_FLAG_ZERO_CHANNEL;
	}
	if (t->flags != 0)
		ev.flags |= METRICS_FLAG_TRANSFORM_DEGENERATE;
	out->block = transform_block_size(&t->spec, d);
	{
		double range_sq = qc->act.mode == QUANT_SYMMETRIC ? stats->mean_sq_range_sym
								   : stats->mean_sq_range_asym;

		out->c_x_raw = range_sq > 0 ? stats->mean_sq_norm / range_sq : NAN;
	}
	prepare_sample(&ev, out);

	col_norm = alloc_array(d, sizeof(*col_norm));
	out->n_layers = layers->count;
	for (int l = 0; l < layers->count; l++) {
		if (evaluate_layer(&ev, l, &layers->layer[l], &out->layer[l], sums, col_norm, err) < 0) {
			free(col_norm);
			goto out;
		}
		ev.flags |= out->layer[l].flags;
	}
	free(col_norm);
	if (ev.invariants != NULL)
		ev.invariants->has_signal = true;

	/* Site totals: layers add their signals and noises. */
	{
		double signal = sums[SUM_SIGNAL];

		out->c_w = sums[SUM_RANGE_SQ] > 0 ? sums[SUM_FROB_T] / sums[SUM_RANGE_SQ] : NAN;
		out->alignment = signal > 0 ? signal / (sums[SUM_FROB_T] * ev.trace_xt) : NAN;
		out->alignment_raw = signal > 0 ? signal / (sums[SUM_FROB] * ev.trace_x) : NAN;
		out->predicted.weight_db = ratio_db(signal, sums[SUM_NOISE_W]);
		out->predicted.act_db = ratio_db(signal, sums[SUM_NOISE_X]);
		out->predicted.total_db = ratio_db(signal, sums[SUM_NOISE_W] + sums[SUM_NOISE_X]);
		out->factorised.weight_db = factorised_db(qc->weight.bits, out->c_w, out->alignment);
		out->factorised.act_db = factorised_db(qc->act.bits, out->c_x, out->alignment);
		out->factorised.total_db = parallel_db(out->factorised.weight_db,
						       out->factorised.act_db);
		if (ev.n > 0) {
			out->measured.weight_db = ratio_db(sums[SUM_MEAS_SIGNAL], sums[SUM_MEAS_W]);
			out->measured.act_db = ratio_db(sums[SUM_MEAS_SIGNAL], sums[SUM_MEAS_X]);
			out->measured.total_db = ratio_db(sums[SUM_MEAS_SIGNAL], sums[SUM_MEAS_BOTH]);
		} else {
			out->measured.weight_db = out->measured.act_db = out->measured.total_db = NAN;
		}
		out->gap_db = out->measured.total_db - out->predicted.total_db;
		if (!(signal > 0)) {
			ev.flags |= METRICS_FLAG_ZERO_SIGNAL;
			out->best_1 = out->best_k = out->best_full = out->headroom_db = NAN;
		} else {
			best_alignments(&ev, opt, layers->count, signal, out);
			out->headroom_db = 10 * log10((isnan(out->best_full) ? out->best_k
									   : out->best_full) /
						      out->alignment);
		}
	}
	if (!ev.parts && ev.n > 0)
		ev.flags |= METRICS_FLAG_PARTS_SKIPPED;
	out->flags = ev.flags;
	/* A missing sample is expected without calibration, and the flag in the result
	 * records it, so it is not worth a warning per site. */
	warn_flags(ev.flags & ~(METRICS_FLAG_FULL_SKIPPED | METRICS_FLAG_NO_SAMPLE |
				METRICS_FLAG_PARTS_SKIPPED), layers, d);
	rc = 0;
out:
	evaluation_free(&ev);
	engine_scratch_release(&own_scratch);
	return rc;
}

int
engine_evaluate_site(const struct site_stats *stats, const struct site_layers *layers,
		     const struct transform_spec *spec, const struct quant_config *qc,
		     struct site_result *out, struct error *err)
{
	struct transform t;
	int rc;

	if (transform_build(spec, stats, layers, &t, err) < 0)
		return -1;
	rc = engine_evaluate_transform(stats, layers, &t, qc, NULL, out, err);
	transform_free(&t);
	return rc;
}
