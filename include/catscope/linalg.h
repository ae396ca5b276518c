/* Dense linear algebra: the only part that calls BLAS (OpenBLAS cblas) and LAPACKE.
 *
 * Matrices are row-major. Single precision is used for token batches and weights,
 * double precision for second moments and every eigendecomposition. The module also
 * owns dtype conversion (float16, bfloat16), the Walsh-Hadamard transform, an
 * orthogonal "Hadamard" for any width, and a small seeded random generator.
 *
 * Hadamard for any width d: write d = 2^a * q with q odd. The transform is
 *     H_d = (H_{2^a} / sqrt(2^a)) (Kronecker) C_q
 * where H_{2^a} is the Sylvester Hadamard matrix and C_q the orthonormal DCT-II of
 * size q (C_1 = [1]). Index i of a vector maps to (p, l) = (i / q, i % q). Both factors
 * are orthogonal, so H_d is orthogonal to float rounding for every width and is its
 * own transpose only when q = 1. Consequence: for q > 1 the entries are not all
 * +-1/sqrt(d) (the largest is sqrt(2/d)), so outliers are spread slightly less evenly
 * than by a true Hadamard matrix, and the cost per vector is d * (a + q) instead of
 * d * a. Examples: 172 = 4 * 43, 5632 = 512 * 11, 8960 = 256 * 35, 11008 = 256 * 43,
 * 14336 = 2048 * 7. */
#ifndef CATSCOPE_LINALG_H
#define CATSCOPE_LINALG_H

#include <stdbool.h>
#include <stdint.h>

#include "catscope/error.h"

/* C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T (trans_x). C is m x n. */
void linalg_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
		  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void linalg_dgemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha,
		  const double *a, int lda, const double *b, int ldb, double beta, double *c,
		  int ldc);

/* C = alpha * A^T A + beta * C for A of shape k x n (ld lda); fills both triangles of
 * the n x n matrix C. */
void linalg_dsyrk_t(int n, int k, double alpha, const double *a, int lda, double beta,
		    double *c, int ldc);
/* C = alpha * A A^T + beta * C for A of shape n x k; fills both triangles. */
void linalg_dsyrk_n(int n, int k, double alpha, const double *a, int lda, double beta,
		    double *c, int ldc);
/* B <- B L for B (m x n, ld ldb) and L lower triangular n x n. */
void linalg_dtrmm_right_lower(int m, int n, const double *l, int ldl, double *b, int ldb);

/* Eigendecomposition of the symmetric n x n matrix a (dsyevd, ascending eigenvalues into
 * w). With vectors, a is overwritten by the eigenvectors as columns; without, a is
 * destroyed. Returns -1 if LAPACK fails to converge. */
int linalg_sym_eig(int n, double *a, double *w, bool vectors, struct error *err);

/* Mean of the diagonal of an n x n matrix. */
double linalg_mean_diag(int n, const double *a, int lda);

/* out = (A + ridge * I)^p for symmetric A (n x n). Eigenvalues below zero (rounding) are
 * raised to zero before the ridge. Fails if an eigenvalue is then zero and p < 0.
 * out may equal a. */
int linalg_sym_power(int n, const double *a, double ridge, double p, double *out,
		     struct error *err);

/* Matrix geometric mean G = A^{-1} # B = A^{-1/2} (A^{1/2} B A^{1/2})^{1/2} A^{-1/2}, the
 * symmetric positive definite solution of G A G = B, for A and B n x n positive
 * definite (add any ridge first). Writes G^{1/2} into sqrt_g and G^{-1/2} into
 * inv_sqrt_g (either may be NULL) and, if trace_root is not NULL, the value
 * tr (A^{1/2} B A^{1/2})^{1/2}. Fails if A or G is not positive definite. */
int linalg_geometric_mean(int n, const double *a, const double *b, double *sqrt_g,
			  double *inv_sqrt_g, double *trace_root, struct error *err);

/* Cholesky factor: a (n x n) is replaced by lower L with L L^T = a. Fails if a is not
 * positive definite. */
int linalg_cholesky(int n, double *a, struct error *err);
/* Inverse of a symmetric positive definite matrix, in place. */
int linalg_spd_inverse(int n, double *a, struct error *err);

/* dtype conversion. Rounding to float16/bfloat16 is to nearest even; NaN stays NaN. */
float linalg_f16_to_f32(uint16_t h);
uint16_t linalg_f32_to_f16(float f);
float linalg_bf16_to_f32(uint16_t h);
uint16_t linalg_f32_to_bf16(float f);
void linalg_f16_to_f32_row(const uint16_t *in, float *out, int64_t n);
void linalg_bf16_to_f32_row(const uint16_t *in, float *out, int64_t n);
void linalg_f32_to_f16_row(const float *in, uint16_t *out, int64_t n);
void linalg_f32_to_bf16_row(const float *in, uint16_t *out, int64_t n);

/* Fast Walsh-Hadamard transform of x (length n, a power of two), normalised by
 * 1/sqrt(n) so that it is orthogonal and its own inverse. */
void linalg_fwht(float *x, int n);
void linalg_fwht_double(double *x, int n);
/* diag (width) of H S H^T for the any-width Hadamard H of linalg_hadamard_rows and a
 * symmetric width x width S (double, row stride ld), in about width^2 additions
 * instead of transforming S. */
void linalg_hadamard_diagonal(const double *sigma, int64_t ld, int width, double *diag);
/* True if n is a power of two (n >= 1). */
bool linalg_is_pow2(int n);
/* Largest power of two dividing n (n >= 1). */
int linalg_pow2_factor(int n);

/* Applies H_width (see the top of this file) to the segment x[r*ld + 0 .. width-1] of
 * each of rows rows, in place. With transpose, applies H_width^T. */
void linalg_hadamard_rows(float *x, int rows, int ld, int width, bool transpose);
/* Applies H_block to each block of the first width columns of every row and writes
 * the result into out, which has the layout of x and may equal it. The last block may
 * be narrower and gets its own H. Large inputs split the butterflies across threads
 * (parallel.h). */
void linalg_hadamard_blocks(const float *x, float *out, int64_t rows, int64_t ld, int width,
			    int block, bool transpose);
/* Writes the dense width x width matrix H_width (row-major), for tests and export. */
void linalg_hadamard_matrix(int width, float *out);

/* splitmix64 generator: returns the next 64-bit value and advances *state. */
uint64_t linalg_rng_next(uint64_t *state);
/* Standard normal deviate (Box-Muller) from the generator. */
double linalg_rng_normal(uint64_t *state);
/* Random orthogonal n x n matrix (row-major, double): QR of a Gaussian matrix with
 * the signs of R's diagonal moved into Q, so that Q is Haar distributed and fixed by
 * the seed. */
int linalg_random_orthogonal(int n, uint64_t seed, double *q, struct error *err);

#endif
