/* Function-preserving transforms of one quantized input site.
 *
 * A transform is an invertible d x d matrix T applied to every activation x of a site
 * (x <- T x) while each weight reading that site absorbs its inverse (W <- W T^{-1}),
 * so that (W T^{-1})(T x) = W x before quantization. Every T here is a product of up
 * to three stages, each optional and block-diagonal:
 *
 *     T = H . B . D
 *
 * D a diagonal scale, B dense blocks (size k, the last block may be smaller), H the
 * orthogonal any-width Hadamard of linalg.h applied per block. The weight side uses
 * T^{-T} = H . B^{-T} . D^{-1} on each weight row, because H is orthogonal.
 *
 * Spec strings (transform_spec_parse):
 *   none             identity
 *   smooth[:A]       SmoothQuant: x_i <- x_i / s_i, s_i = max|x_i|^A / max|W_:,i|^(1-A),
 *                    maxima over the calibration tokens and all the site's layers
 *                    (A = 0.5 by default)
 *   hadamard         Hadamard over the full width d
 *   hadamard:K       Hadamard on blocks of K channels
 *   random[:S[:K]]   random orthogonal with seed S (default 0), full width or blocks
 *                    of K; full width needs d <= TRANSFORM_DENSE_MAX
 *   cat1             CAT with k = 1: x_i <- m_i x_i, m_i = (Sw_ii / Sx_ii)^(1/4)
 *   cat              CAT with the default block (128, or d when d < 128)
 *   cat:K            CAT with blocks of K: T_b = H_K . G_b^(1/2),
 *                    G_b = Sx_bb^{-1} # Sw_bb (matrix geometric mean)
 *   cat:full         CAT with k = d (d <= TRANSFORM_DENSE_MAX)
 * where Sx = E[x x^T] of the site and Sw = sum over its layers of W^T W. Both get a
 * ridge of spec.ridge times their mean diagonal before CAT inverts or takes roots. */
#ifndef CATSCOPE_TRANSFORM_H
#define CATSCOPE_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"
#include "catscope/sitestats.h"

/* Largest dense block (and full-width CAT or random transform): a d x d float block
 * costs 4 d^2 bytes and the CAT build three d x d eigendecompositions. */
#define TRANSFORM_DENSE_MAX 8192
#define TRANSFORM_DEFAULT_BLOCK 128
#define TRANSFORM_DEFAULT_RIDGE 1e-6

/* The weights of one site: 1 to 3 linear layers reading the same input. Borrowed. */
#define SITE_LAYERS_MAX 3
struct site_layer {
	const char *name;      /* such as "blk.0.attn_q" */
	int rows;              /* m, output channels */
	const float *weight;   /* rows x d, row-major */
};
struct site_layers {
	int count;
	struct site_layer layer[SITE_LAYERS_MAX];
};

enum transform_kind {
	TRANSFORM_NONE,
	TRANSFORM_SMOOTH,
	TRANSFORM_HADAMARD,
	TRANSFORM_RANDOM,
	TRANSFORM_CAT,
};

#define TRANSFORM_BLOCK_FULL 0      /* k = d */
#define TRANSFORM_BLOCK_DEFAULT (-1) /* k = TRANSFORM_DEFAULT_BLOCK, or d if smaller */

struct transform_spec {
	enum transform_kind kind;
	int block;             /* k; TRANSFORM_BLOCK_FULL or _DEFAULT; 1 for cat1 */
	double alpha;          /* SmoothQuant migration strength */
	uint64_t seed;         /* random orthogonal */
	/* CAT: fraction of the mean diagonal added to Sx and Sw. NOTE: when Sw is rank
	 * deficient (more inputs than rows, as for cat:full at ffn_down) the alignment
	 * reached falls short of A* by O(sqrt(ridge)), about 5e-4 relative at 1e-6. */
	double ridge;
};

/* Problems found while building, in transform.flags. */
#define TRANSFORM_FLAG_DEGENERATE_CHANNEL 0x1u /* a scale fell back to 1 (zero maxima) */
#define TRANSFORM_FLAG_DEGENERATE_BLOCK   0x2u /* a CAT block fell back to the identity */

struct transform {
	struct transform_spec spec;
	int dim;
	float *scale;          /* d, or NULL: stage D */
	int dense_block;       /* 0 if there is no stage B */
	float *dense;          /* blocks B_b, s_b x s_b row-major, one after another */
	float *dense_inv_t;    /* B_b^{-T} in the same layout */
	int hadamard_block;    /* 0 if there is no stage H */
	unsigned flags;
};

int transform_spec_parse(const char *text, struct transform_spec *spec, struct error *err);
/* Writes the canonical spec string into buf. */
void transform_spec_format(const struct transform_spec *spec, char *buf, int size);
/* True when both specs build the same transform: fields a kind does not use are
 * ignored, so a parsed "none" equals a zeroed one. */
bool transform_spec_equal(const struct transform_spec *x, const struct transform_spec *y);
/* The block size k the spec resolves to at width dim (1 for diagonal kinds, dim for
 * none). */
int transform_block_size(const struct transform_spec *spec, int dim);

/* Checks that every layer is finite-sized and reads stats->dim inputs. */
int site_layers_check(const struct site_layers *layers, int dim, struct error *err);

/* Builds T for one site. stats must hold the second moment (and absmax for smooth);
 * layers may be NULL for kinds that do not look at weights (none, hadamard, random).
 * On success the caller frees t with transform_free. */
int transform_build(const struct transform_spec *spec, const struct site_stats *stats,
		    const struct site_layers *layers, struct transform *t, struct error *err);
/* Bytes of the buffers of t. */
size_t transform_heap_bytes(const struct transform *t);
/* Frees the buffers of t; t may be zeroed memory or already freed. */
void transform_free(struct transform *t);

/* True when T is the identity (no stage), so applying it only copies. */
bool transform_is_identity(const struct transform *t);
/* x <- T x for each of the n rows of x (n x d, row-major), in place. */
void transform_apply_activations(const struct transform *t, float *x, int64_t n);
/* out <- T x for each row, out of place: saves the copy and, for a dense stage, the
 * staging buffer. out must not overlap x. */
void transform_apply_activations_to(const struct transform *t, const float *x, float *out,
				    int64_t n);
/* W <- W T^{-1} for a rows x d weight, in place. */
void transform_apply_weights(const struct transform *t, float *w, int64_t rows);
/* out <- W T^{-1}, out of place; out must not overlap w. */
void transform_apply_weights_to(const struct transform *t, const float *w, float *out,
				int64_t rows);
/* out (d x d float) = T sigma T^T for a symmetric d x d sigma (double). */
void transform_conjugate(const struct transform *t, const double *sigma, float *out);
/* diag (d) = the diagonal of T sigma T^T, from the diagonal blocks of sigma only, so it
 * costs d * k^2 instead of d^2 * k. */
void transform_conjugate_diagonal(const struct transform *t, const double *sigma,
				  double *diag);
/* The dense d x d matrix T (row-major), for tests and export. */
void transform_dense_matrix(const struct transform *t, float *out);

#endif
