/* Uniform integer quantization: grids, fake quantization, integer codes and their
 * int32 packing, clipping search and GPTQ rounding.
 *
 * A quantizer has b bits (2..8) and N = 2^b - 1 intervals; its step is
 * Delta = range / N over one group (a weight row or group of g columns, a token or a
 * token group). Every stored code u is unsigned, 0 <= u <= 2^b - 1, and dequantizes
 * as (u - z) * Delta:
 *
 *   symmetric   Delta = 2 * clip * max|v| / N, q = clamp(round(v / Delta),
 *               -2^(b-1), 2^(b-1) - 1), u = q + 2^(b-1), z = 2^(b-1). Zero is exact.
 *               The grid is one level short on the positive side, so a value near
 *               +clip * max|v| lands on (2^(b-1) - 1) * Delta, still within Delta / 2.
 *               This is the compressed-tensors "pack-quantized" symmetric layout
 *               (codes offset by 8 at 4 bits).
 *   asymmetric  lo, hi = centre -+ clip * (max v - min v) / 2, Delta = (hi - lo) / N,
 *               z = round(-lo / Delta) (any integer, not clamped), u = clamp(round(v /
 *               Delta) + z, 0, N). Rounding z moves the grid by up to Delta / 2, so the
 *               error at the ends of the range can reach Delta.
 *
 * Rounding is to nearest, ties to even. A group whose range is zero (all-zero, or
 * constant for asymmetric) gets Delta = |value| (or 1 when the value is 0) so that it
 * is reproduced exactly. Matrices are row-major float32. */
#ifndef CATSCOPE_QUANT_H
#define CATSCOPE_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "catscope/error.h"

#define QUANT_BITS_MIN 2
#define QUANT_BITS_MAX 8

enum quant_mode { QUANT_SYMMETRIC, QUANT_ASYMMETRIC };

/* One quantizer: a weight quantizer groups along a row's columns, an activation
 * quantizer along a token's channels. */
struct quant_params {
	int bits;              /* 2..8; 0 means not quantized (kept in float) */
	enum quant_mode mode;
	int group_size;        /* 0: the whole row or token is one group */
	float clip;            /* range multiplier in (0, 1]; 1 uses the full max */
};

enum quant_rounding { QUANT_RTN, QUANT_GPTQ };

struct quant_config {
	struct quant_params weight;
	struct quant_params act;
	enum quant_rounding rounding;
	bool clip_search;      /* per weight row, minimising tr(dW Sigma_x dW^T) */
	double gptq_damp;      /* dampening as a fraction of the Hessian's mean diagonal */
};

/* Flags that quant functions add to a caller's bitfield. */
#define QUANT_FLAG_HESSIAN_DAMPED 0x1u /* GPTQ raised the dampening to factorise H */
#define QUANT_FLAG_DEAD_INPUTS    0x2u /* GPTQ found zero Hessian diagonal entries */

/* The largest GPTQ dampening quant_config_parse accepts, as a fraction of the mean
 * Hessian diagonal. */
#define QUANT_DAMP_MAX 1.0

/* W4 per channel symmetric RTN, A4 per token symmetric, damp 0.01. */
void quant_config_default(struct quant_config *qc);

/* Parses "<bits>[:sym|:asym][:g<size>][:clip=<ratio>]" or "none", for example
 * "4", "8:asym", "4:g128:clip=0.9". Each field may be given once. */
int quant_params_parse(const char *text, struct quant_params *p, struct error *err);
/* Parses a whole configuration: comma-separated items "w<params>" and "a<params>" (the
 * quant_params_parse syntax after the letter), "rtn" or "gptq", "clip-search" and
 * "damp=<fraction>", such as "w4:g128,a8:asym,gptq". The shorthand "w4a4" sets both bit
 * widths. Items left out keep the quant_config_default values. An item that sets a
 * field already set (such as "w4,w8" or "rtn,gptq") is an error. */
int quant_config_parse(const char *text, struct quant_config *qc, struct error *err);
/* Writes the canonical text of qc (as accepted by quant_config_parse) into buf. */
void quant_config_format(const struct quant_config *qc, char *buf, int size);
/* Writes the canonical text of p (as accepted by quant_params_parse) into buf. */
void quant_params_format(const struct quant_params *p, char *buf, int size);
/* Fails with a message naming the bad field unless p is usable. */
int quant_params_check(const struct quant_params *p, struct error *err);

/* Number of groups a row of cols values has. */
int quant_group_count(const struct quant_params *p, int cols);

/* Step and zero point of one group of n values (clip overrides p->clip if > 0). */
void quant_group_step(const float *v, int n, const struct quant_params *p, float clip,
		      float *step, int32_t *zero);
/* The same, and the group's range before clipping: 2 max|v| when symmetric, max - min
 * when asymmetric. A group of range 0 is reproduced exactly. */
void quant_group_step_range(const float *v, int n, const struct quant_params *p, float clip,
			    float *step, int32_t *zero, float *range);
/* Fake-quantizes one group of n values on the grid (step, zero) into out, which may
 * be v itself. */
void quant_fake_group(const float *v, float *out, int n, const struct quant_params *p,
		      float step, int32_t zero);
/* The unsigned code of v on the grid (step, zero). */
uint8_t quant_code(float v, const struct quant_params *p, float step, int32_t zero);

/* Fake-quantizes (quantize, then dequantize) each of rows rows of cols values
 * (row stride ld), in place. row_clip (rows values) overrides p->clip if not NULL.
 * Does nothing when p->bits is 0. */
void quant_fake_rows(float *x, int rows, int cols, int64_t ld, const struct quant_params *p,
		     const float *row_clip);

/* Integer codes of a rows x cols matrix: codes rows x cols, scales and zeros
 * rows x quant_group_count. */
void quant_codes(const float *w, int rows, int cols, const struct quant_params *p,
		 const float *row_clip, uint8_t *codes, float *scales, int32_t *zeros);
/* The float matrix the codes stand for. */
void quant_dequantize(const uint8_t *codes, int rows, int cols, const struct quant_params *p,
		      const float *scales, const int32_t *zeros, float *out);

/* Packs n codes of bits bits (2, 4 or 8) into int32 words, 32 / bits per word, with the
 * first code in the lowest bits. Zero codes pad the last word. Returns the number of
 * words, or -1 for an unsupported width. */
int64_t quant_pack(const uint8_t *codes, int64_t n, int bits, int32_t *out, struct error *err);
int64_t quant_packed_words(int64_t n, int bits);
/* Inverse of quant_pack for n codes. */
int quant_unpack(const int32_t *packed, int64_t n, int bits, uint8_t *codes,
		 struct error *err);

/* Chooses, per row, the clip ratio in {1.00, 0.95, ..., 0.50} that minimises the output
 * error e_r Sigma e_r^T of the fake-quantized row, with sigma the cols x cols second
 * moment of the inputs (float, row-major). Costs 2 * rows * cols^2 flops per ratio. */
void quant_clip_search(const float *w, int rows, int cols, const float *sigma,
		       const struct quant_params *p, float *row_clip);

/* GPTQ: fake-quantizes w (rows x cols) in place, column by column, pushing each column's
 * error onto the columns not yet quantized through the inverse Hessian. hessian is the
 * cols x cols second moment of the layer's inputs (double); damp is added as a
 * fraction of its mean diagonal. A Hessian that does not factorise gets ten times more
 * dampening (up to six times), a log_warn and QUANT_FLAG_HESSIAN_DAMPED in *flags.
 * Fails only if the Hessian is not finite or never factorises. */
int quant_gptq(float *w, int rows, int cols, const double *hessian,
	       const struct quant_params *p, const float *row_clip, double damp,
	       unsigned *flags, struct error *err);

#endif
