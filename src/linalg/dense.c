/* BLAS products and LAPACK symmetric matrix functions, all row-major. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"

void
linalg_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
	     int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
	if (m <= 0 || n <= 0)
		return;
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
		    ldc);
}

void
linalg_dgemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double *a,
	     int lda, const double *b, int ldb, double beta, double *c, int ldc)
{
	if (m <= 0 || n <= 0)
		return;
	cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
		    ldc);
}

void
linalg_dsyrk_t(int n, int k, double alpha, const double *a, int lda, double beta, double *c,
	       int ldc)
{
	cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, alpha, a, lda, beta, c, ldc);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			c[(int64_t)i * ldc + j] = c[(int64_t)j * ldc + i];
}

void
linalg_dsyrk_n(int n, int k, double alpha, const double *a, int lda, double beta, double *c,
	       int ldc)
{
	cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			c[(int64_t)i * ldc + j] = c[(int64_t)j * ldc + i];
}

void
linalg_dtrmm_right_lower(int m, int n, const double *l, int ldl, double *b, int ldb)
{
	cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0,
		    l, ldl, b, ldb);
}

int
linalg_sym_eig(int n, double *a, double *w, bool vectors, struct error *err)
{
	lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, vectors ? 'V' : 'N', 'U', n, a, n, w);

	if (info != 0)
		return error_set(err, "symmetric eigendecomposition of a %d x %d matrix failed "
				      "(dsyevd info %d)", n, n, (int)info);
	return 0;
}

double
linalg_mean_diag(int n, const double *a, int lda)
{
	double sum = 0;

	for (int i = 0; i < n; i++)
		sum += a[(int64_t)i * lda + i];
	return n > 0 ? sum / n : 0;
}

/* out = V diag(f) V^T for eigenvectors V (columns of v). */
static void
compose_eigen(int n, const double *v, const double *f, double *out)
{
	double *vf = alloc_array((size_t)n * n, sizeof(*vf));

	for (int64_t i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			vf[i * n + j] = v[i * n + j] * f[j];
	linalg_dgemm(false, true, n, n, n, 1.0, vf, n, v, n, 0.0, out, n);
	free(vf);
}

int
linalg_sym_power(int n, const double *a, double ridge, double p, double *out,
		 struct error *err)
{
	double *v = alloc_array((size_t)n * n, sizeof(*v));
	double *w = alloc_array(n, sizeof(*w));
	int rc = -1;

	memcpy(v, a, sizeof(*v) * n * n);
	if (linalg_sym_eig(n, v, w, true, err) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		double lambda = (w[i] > 0 ? w[i] : 0) + ridge;

		if (lambda <= 0 && p < 0) {
			error_set(err, "matrix power %g of a singular %d x %d matrix; add a ridge",
				  p, n, n);
			goto out;
		}
		w[i] = lambda > 0 ? pow(lambda, p) : 0;
	}
	compose_eigen(n, v, w, out);
	rc = 0;
out:
	free(v);
	free(w);
	return rc;
}

int
linalg_geometric_mean(int n, const double *a, const double *b, double *sqrt_g,
		      double *inv_sqrt_g, double *trace_root, struct error *err)
{
	size_t nn = (size_t)n * n;
	double *l = alloc_array(nn, sizeof(*l));
	double *m = alloc_array(nn, sizeof(*m));
	double *g = alloc_array(nn, sizeof(*g));
	double *w = alloc_array(n, sizeof(*w));
	double *f = alloc_array(n, sizeof(*f));
	lapack_int info;
	int rc = -1;

	/* With A = L L^T and L^T B L = U Lambda U^T, G = L^-T U Lambda^1/2 U^T L^-1 solves
	 * G A G = B and is positive definite, so it is A^-1 # B. This takes one Cholesky
	 * factor and one eigendecomposition where the square roots of A would take two. */
	memcpy(l, a, sizeof(*l) * nn);
	info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, l, n);
	if (info != 0) {
		error_set(err, "geometric mean: first matrix is not positive definite (dpotrf "
			       "info %d); add a ridge", (int)info);
		goto out;
	}
	for (int64_t i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			l[i * n + j] = 0;
	memcpy(m, b, sizeof(*m) * nn);
	cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, n, n, 1.0,
		    l, n, m, n);
	cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, n, 1.0, l,
		    n, m, n);
	for (int64_t i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			m[i * n + j] = m[j * n + i] = 0.5 * (m[i * n + j] + m[j * n + i]);
	if (linalg_sym_eig(n, m, w, true, err) < 0)
		goto out;
	/* L^T B L is similar to A^1/2 B A^1/2, so their eigenvalues agree. */
	if (trace_root != NULL) {
		double sum = 0;

		for (int i = 0; i < n; i++)
			sum += sqrt(w[i] > 0 ? w[i] : 0);
		*trace_root = sum;
	}

	/* P = L^-T U Lambda^1/4, then G = P P^T. */
	for (int64_t i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			m[i * n + j] *= sqrt(sqrt(w[j] > 0 ? w[j] : 0));
	cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, n, 1.0, l,
		    n, m, n);
	linalg_dsyrk_n(n, n, 1.0, m, n, 0.0, g, n);
	if (linalg_sym_eig(n, g, w, true, err) < 0)
		goto out;
	if (w[0] <= 0) {
		error_set(err, "geometric mean: second matrix is not positive definite "
			       "(smallest eigenvalue of G %g); add a ridge", w[0]);
		goto out;
	}
	if (sqrt_g != NULL) {
		for (int i = 0; i < n; i++)
			f[i] = sqrt(w[i]);
		compose_eigen(n, g, f, sqrt_g);
	}
	if (inv_sqrt_g != NULL) {
		for (int i = 0; i < n; i++)
			f[i] = 1.0 / sqrt(w[i]);
		compose_eigen(n, g, f, inv_sqrt_g);
	}
	rc = 0;
out:
	free(l);
	free(m);
	free(g);
	free(w);
	free(f);
	return rc;
}

int
linalg_cholesky(int n, double *a, struct error *err)
{
	lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, a, n);

	if (info != 0)
		return error_set(err, "Cholesky factorisation of a %d x %d matrix failed: "
				      "not positive definite (dpotrf info %d)", n, n, (int)info);
	for (int64_t i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			a[i * n + j] = 0;
	return 0;
}

int
linalg_spd_inverse(int n, double *a, struct error *err)
{
	lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, a, n);

	if (info == 0)
		info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', n, a, n);
	if (info != 0)
		return error_set(err, "inverse of a %d x %d matrix failed: not positive definite "
				      "(info %d)", n, n, (int)info);
	for (int64_t i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			a[i * n + j] = a[(int64_t)j * n + i];
	return 0;
}
