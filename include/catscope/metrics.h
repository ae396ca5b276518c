/* The diagnostics engine: for one site, a transform and a quantizer, the concentration,
 * alignment, best reachable alignment, and predicted and measured SQNR of the site and
 * of each of its layers.
 *
 * Definitions (x a token, W a layer, Sx = E[x x^T], Sw = W^T W summed over layers):
 *   C(x) = E||x||^2 / E[range(x)^2]           range 2 max|x_i| or max - min (act mode)
 *   C(W) = ||W||_F^2 / sum_r range(w_r)^2      range by the weight mode, whole rows
 *   A    = tr(Sw Sx) / (tr Sw tr Sx), evaluated after the transform as
 *          tr(Sw Sx) / (||W T^-1||_F^2 tr(T Sx T^T)) (the numerator does not change)
 *   A*_1 = tr(Sw Sx) / (sum_i sqrt(Sw_ii Sx_ii))^2          best per-channel scaling
 *   A*_k = tr(Sw Sx) / (sum_b tr (Sx_bb^1/2 Sw_bb Sx_bb^1/2)^1/2)^2   best block-k
 *   A*   = sum lambda / (sum sqrt lambda)^2, lambda the eigenvalues of W Sx W^T
 * Predicted SQNR uses the noise model with uniform rounding noise of variance
 * Delta^2 / 12 per element:
 *   E||dW x||^2 = sum_r sum_i Delta_{r,g(i)}^2 / 12 * (T Sx T^T)_ii
 *   E||W dx||^2 = sum_i ||W'_:,i||^2 * E_tokens[Delta_{g(i)}^2] / 12
 * (activation steps averaged over the transformed sample), combined as
 * 1/SQNR = 1/SQNR_w + 1/SQNR_x. The factorised values 12 N^2 C A are reported beside
 * them; they equal the prediction only for per-channel and per-token groups without
 * clipping. Measured SQNR quantizes for real: W' = Q(W T^-1) (RTN or GPTQ), x' =
 * Q(T x) per token, over the stored sample. Every SQNR is in dB.
 *
 * A field is NaN only when a METRICS_FLAG_* in the result explains it, and +Inf only
 * when there is no quantization noise at all. */
#ifndef CATSCOPE_METRICS_H
#define CATSCOPE_METRICS_H

#include <stdbool.h>

#include "catscope/error.h"
#include "catscope/quant.h"
#include "catscope/sitestats.h"
#include "catscope/transform.h"

#define METRICS_FLAG_NONFINITE_WEIGHT 0x0001u /* NaN or Inf weights, counted as 0 */
#define METRICS_FLAG_NONFINITE_SAMPLE 0x0002u /* sample tokens with NaN or Inf, skipped */
#define METRICS_FLAG_ZERO_ROW         0x0004u /* an all-zero weight row */
#define METRICS_FLAG_ZERO_CHANNEL     0x0008u /* an input channel with Sx_ii = 0 */
#define METRICS_FLAG_CONSTANT_TOKEN   0x0010u /* a sample token with zero range */
#define METRICS_FLAG_NO_SAMPLE        0x0020u /* no usable sample: measured SQNR, C(x)
					       * after the transform and (for a
					       * transform) predicted activation noise
					       * are NaN */
#define METRICS_FLAG_ZERO_SIGNAL      0x0040u /* E||Wx||^2 = 0: SQNR and A are NaN */
#define METRICS_FLAG_FULL_SKIPPED     0x0080u /* d or rows above the full limit: A* NaN */
#define METRICS_FLAG_HESSIAN_DAMPED   0x0100u /* GPTQ needed more dampening */
#define METRICS_FLAG_TRANSFORM_DEGENERATE 0x0200u /* the transform left channels unscaled */
#define METRICS_FLAG_FEW_TOKENS       0x0400u /* fewer sample tokens than 16 */
#define METRICS_FLAG_PARTS_SKIPPED    0x0800u /* measured weight-only and activation-only
					       * SQNRs not requested: NaN */

/* Width above which the full optimum A* is skipped. A* needs a Cholesky factor of the
 * d x d Sx and the eigenvalues of a min(d, rows) square matrix, about (1/3 + 4/3) d^3
 * double flops. bench_site reports what it costs at d = 4096. */
#define METRICS_FULL_LIMIT_DEFAULT 4096

/* Diagonals of T Sx T^T kept per site, one per transform. Each costs d doubles. At a
 * full-width Hadamard of d = 14336 computing one costs about half a sample GEMM
 * (bench_site), so switching back and forth between transforms should not repeat it. */
#define ENGINE_DIAGONALS_KEPT 4
struct engine_diagonal {
	struct transform_spec spec;
	int dim;
	double *diag;          /* dim values, or NULL: slot empty */
	unsigned long used;    /* for least-recently-used replacement */
};

/* The parts of a site's diagnostics that no transform or quantizer changes: each
 * layer's signal tr(W Sx W^T), its outputs Y = X W^T on the sample, and the best
 * alignments. The signal and the best alignments cost about one m x d x d product and
 * Y one GEMM. Together that is several times the rest of an evaluation, so a caller
 * that evaluates one site again and again (the explorer) keeps them here. Valid only for the
 * statistics and weights they were computed from. The outputs are heap memory: release
 * them with engine_invariants_release; copying the struct copies only the pointers. */
struct engine_invariants {
	bool has_signal;
	double signal[SITE_LAYERS_MAX];
	double frobenius[SITE_LAYERS_MAX];  /* ||W||_F^2 with non-finite weights as 0 */
	unsigned layer_flags[SITE_LAYERS_MAX]; /* METRICS_FLAG_* of the weights alone */
	int best_block;        /* k the best alignments were computed for; 0: none yet */
	int full_limit;
	double best_1, best_k, best_full;
	int output_tokens;     /* sample tokens the outputs are for; 0: no outputs kept */
	int output_rows[SITE_LAYERS_MAX];
	float *output[SITE_LAYERS_MAX]; /* output_tokens x output_rows, Y = X W^T */
	double output_power[SITE_LAYERS_MAX]; /* ||Y||_F^2 */
	struct engine_diagonal diagonal[ENGINE_DIAGONALS_KEPT];
	unsigned long diagonal_clock;
};

/* Frees the kept outputs and diagonals; the scalar invariants stay valid. */
void engine_invariants_release(struct engine_invariants *inv);
/* Heap bytes held by the kept outputs and diagonals. */
size_t engine_invariants_bytes(const struct engine_invariants *inv);
/* The kept diagonal of T Sx T^T for spec at width dim, or NULL; marks it used. */
const double *engine_invariants_diagonal(struct engine_invariants *inv,
					 const struct transform_spec *spec, int dim);
/* Keeps diag (dim values from malloc, owned by inv afterwards) as the diagonal for
 * spec. It replaces the entry for spec, or else the least recently used one. */
void engine_invariants_keep_diagonal(struct engine_invariants *inv,
				     const struct transform_spec *spec, int dim, double *diag);

/* Buffers that one thread's evaluations reuse. A repeated evaluation then writes into
 * pages already mapped: faulting in fresh weight-sized buffers cost about a third of
 * the sample product at d = m = 4096 (bench_site). Start zeroed; one thread at a time;
 * the buffers grow to the largest site seen until engine_scratch_release. */
#define ENGINE_SCRATCH_SLOTS 12
struct engine_scratch {
	float *buffer[ENGINE_SCRATCH_SLOTS];
	size_t count[ENGINE_SCRATCH_SLOTS];
};

void engine_scratch_release(struct engine_scratch *scratch);
size_t engine_scratch_bytes(const struct engine_scratch *scratch);

struct engine_options {
	int full_limit;        /* compute A* only when d <= this */
	int best_block;        /* k of A*_k; 0 takes the transform's block, or 128 */
	/* Measure the weight-only and activation-only SQNRs too. Each costs one more
	 * product of the size of the sample times W^T; without them measured SQNR needs
	 * one such product once the outputs are kept. When false both are NaN and
	 * METRICS_FLAG_PARTS_SKIPPED is set. */
	bool measure_parts;
	/* In and out: reused when filled for the same statistics and weights, filled
	 * otherwise. NULL computes everything afresh. */
	struct engine_invariants *invariants;
	/* Reused buffers, or NULL to allocate them for this call only. */
	struct engine_scratch *scratch;
};

struct sqnr_values {
	double total_db;       /* weights and activations quantized */
	double weight_db;      /* weights only */
	double act_db;         /* activations only */
};

struct layer_result {
	const char *name;      /* borrowed from the site_layers */
	int rows;
	unsigned flags;
	double c_w;            /* C(W T^-1) */
	double alignment;      /* A(T x, W T^-1) */
	double signal;         /* tr(Sw Sx) of this layer */
	struct sqnr_values predicted, measured, factorised;
	double gap_db;         /* measured.total_db - predicted.total_db */
};

struct site_result {
	unsigned flags;
	int dim;
	int block;             /* k of the transform */
	int best_block;        /* k of best_k */
	int tokens_used;       /* finite sample tokens */
	double c_x;            /* C(T x) from the sample */
	double c_x_raw;        /* C(x) from the statistics, before the transform */
	double c_w;            /* over all layers, after the transform */
	double alignment;      /* after the transform, layers summed */
	double alignment_raw;  /* before the transform */
	double best_1, best_k, best_full; /* A*_1, A*_k, A* (NaN if skipped, flagged) */
	double headroom_db;    /* 10 log10(A* / A), or A*_k / A when A* is skipped */
	struct sqnr_values predicted, measured, factorised;
	double gap_db;
	int n_layers;
	struct layer_result layer[SITE_LAYERS_MAX];
};

void engine_options_default(struct engine_options *opt);

/* Builds the transform of spec and evaluates the site with default options.
 * Returns -1 (with err) for unusable input: missing statistics, mismatched widths, a
 * second moment with NaN or Inf, an invalid quantizer or a failed transform build.
 * Degenerate but usable data (see METRICS_FLAG_*) is flagged and logged instead. */
int engine_evaluate_site(const struct site_stats *stats, const struct site_layers *layers,
			 const struct transform_spec *spec, const struct quant_config *qc,
			 struct site_result *out, struct error *err);

/* Evaluates the site with a transform already built (for example one kept for the
 * simulated forward pass or export). opt may be NULL for the defaults. */
int engine_evaluate_transform(const struct site_stats *stats, const struct site_layers *layers,
			      const struct transform *t, const struct quant_config *qc,
			      const struct engine_options *opt, struct site_result *out,
			      struct error *err);

/* Quantizes one layer's transformed weights in place as the engine does (clip search,
 * then RTN or GPTQ with sigma_t = T Sx T^T as the Hessian); sigma_t may be NULL for RTN
 * without clip search. Adds QUANT_FLAG_* to *flags. */
int engine_quantize_weights(float *w, int rows, int dim, const float *sigma_t,
			    const struct quant_config *qc, unsigned *flags, struct error *err);

#endif
