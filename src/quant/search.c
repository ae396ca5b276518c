/* Rounding that looks at the inputs: per-row clip search and GPTQ. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/log.h"
#include "catscope/quant.h"

#define CLIP_CANDIDATES 11

void
quant_clip_search(const float *w, int rows, int cols, const float *sigma,
		  const struct quant_params *p, float *row_clip)
{
	size_t size = (size_t)rows * cols;
	float *e = alloc_array(size, sizeof(*e));
	float *es = alloc_array(size, sizeof(*es));
	float *clip = alloc_array(rows, sizeof(*clip));
	double *best = alloc_array(rows, sizeof(*best));

	for (int c = 0; c < CLIP_CANDIDATES; c++) {
		float ratio = 1.0f - 0.05f * (float)c;

		for (int r = 0; r < rows; r++)
			clip[r] = ratio;
		memcpy(e, w, size * sizeof(*e));
		quant_fake_rows(e, rows, cols, cols, p, clip);
		for (size_t i = 0; i < size; i++)
			e[i] = w[i] - e[i];
		linalg_sgemm(false, false, rows, cols, cols, 1.0f, e, cols, sigma, cols, 0.0f, es,
			     cols);
		for (int r = 0; r < rows; r++) {
			double cost = 0;

			for (int i = 0; i < cols; i++)
				cost += (double)e[(int64_t)r * cols + i] * es[(int64_t)r * cols + i];
			if (c == 0 || cost < best[r]) {
				best[r] = cost;
				row_clip[r] = ratio;
			}
		}
	}
	free(e);
	free(es);
	free(clip);
	free(best);
}

/* Steps and zero points for rows x 1 group of columns [start, start + n) of wt, which is
 * stored transposed (cols x rows, double). */
static void
column_group_steps(const double *wt, int rows, int start, int n, const struct quant_params *p,
		   const float *row_clip, float *steps, int32_t *zeros)
{
	float *v = alloc_array(n, sizeof(*v));

	for (int r = 0; r < rows; r++) {
		for (int i = 0; i < n; i++)
			v[i] = (float)wt[(int64_t)(start + i) * rows + r];
		quant_group_step(v, n, p, row_clip != NULL ? row_clip[r] : 0, &steps[r], &zeros[r]);
	}
	free(v);
}

/* Upper Cholesky factor U of H^{-1} (H^{-1} = U^T U) after dampening, raising the
 * dampening when H does not factorise. */
static int
inverse_hessian_factor(int n, const double *hessian, double damp, double *u, unsigned *flags,
		       struct error *err)
{
	double mean = linalg_mean_diag(n, hessian, n);

	if (!(mean > 0) || !isfinite(mean))
		mean = 1.0;
	for (int attempt = 0; attempt < 7; attempt++) {
		double lambda = damp * mean * pow(10.0, attempt);

		memcpy(u, hessian, sizeof(*u) * n * n);
		for (int64_t i = 0; i < n; i++)
			u[i * n + i] += lambda;
		if (linalg_spd_inverse(n, u, NULL) == 0 && linalg_cholesky(n, u, NULL) == 0) {
			/* u is lower L with L L^T = H^{-1}, and GPTQ needs U = L^T. */
			for (int64_t i = 0; i < n; i++)
				for (int64_t j = i + 1; j < n; j++) {
					u[i * n + j] = u[j * n + i];
					u[j * n + i] = 0;
				}
			if (attempt > 0) {
				log_warn("GPTQ: Hessian (%d x %d) is not positive definite with "
					 "dampening %g; used %g of its mean diagonal", n, n, damp,
					 damp * pow(10.0, attempt));
				*flags |= QUANT_FLAG_HESSIAN_DAMPED;
			}
			return 0;
		}
	}
	return error_set(err, "GPTQ: Hessian (%d x %d) is not positive definite even with "
			      "dampening %g of its mean diagonal", n, n, damp * 1e6);
}

int
quant_gptq(float *w, int rows, int cols, const double *hessian, const struct quant_params *p,
	   const float *row_clip, double damp, unsigned *flags, struct error *err)
{
	const int block = 128;
	int g_size = quant_group_count(p, cols) == 1 ? cols : p->group_size;
	double *h, *u, *wt, *errs;
	float *steps;
	int32_t *zeros;
	int rc = -1;
	int dead = 0;

	if (p->bits == 0)
		return 0;
	for (int64_t i = 0; i < (int64_t)cols * cols; i++)
		if (!isfinite(hessian[i]))
			return error_set(err, "GPTQ: Hessian contains NaN or Inf at (%d, %d)",
					 (int)(i / cols), (int)(i % cols));

	/* A zero diagonal entry means that input is never seen: its weights do not matter,
	 * and a unit diagonal keeps H factorisable. */
	h = alloc_array((size_t)cols * cols, sizeof(*h));
	memcpy(h, hessian, sizeof(*h) * cols * cols);
	for (int64_t i = 0; i < cols; i++)
		if (h[i * cols + i] <= 0) {
			h[i * cols + i] = 1;
			dead++;
		}
	if (dead > 0)
		*flags |= QUANT_FLAG_DEAD_INPUTS;
	u = alloc_array((size_t)cols * cols, sizeof(*u));
	wt = alloc_array((size_t)cols * rows, sizeof(*wt));
	errs = alloc_array((size_t)block * rows, sizeof(*errs));
	steps = alloc_array(rows, sizeof(*steps));
	zeros = alloc_array(rows, sizeof(*zeros));
	if (inverse_hessian_factor(cols, h, damp, u, flags, err) < 0)
		goto out;

	/* Work on W^T in double so that each column is contiguous. */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t i = 0; i < cols; i++)
			wt[i * rows + r] = w[r * cols + i];
	if (g_size == cols)
		column_group_steps(wt, rows, 0, cols, p, row_clip, steps, zeros);

	for (int b0 = 0; b0 < cols; b0 += block) {
		int b1 = b0 + block < cols ? b0 + block : cols;

		for (int i = b0; i < b1; i++) {
			double *wi = wt + (int64_t)i * rows;
			double d = u[(int64_t)i * cols + i];

			if (g_size < cols && i % g_size == 0)
				column_group_steps(wt, rows, i, i + g_size <= cols ? g_size : cols - i, p,
						   row_clip, steps, zeros);
			for (int r = 0; r < rows; r++) {
				float q = ((float)quant_code((float)wi[r], p, steps[r], zeros[r]) -
					   (float)zeros[r]) * steps[r];
				double e = (wi[r] - q) / d;

				errs[(int64_t)(i - b0) * rows + r] = e;
				wi[r] = q;
			}
			/* Push the error onto the later columns of this block. */
			for (int j = i + 1; j < b1; j++) {
				double uij = u[(int64_t)i * cols + j];
				double *wj = wt + (int64_t)j * rows;
				const double *ei = errs + (int64_t)(i - b0) * rows;

				for (int r = 0; r < rows; r++)
					wj[r] -= uij * ei[r];
			}
		}
		/* Lazy update of all later columns: W^T[b1:] -= U[b0:b1, b1:]^T E. */
		if (b1 < cols)
			linalg_dgemm(true, false, cols - b1, rows, b1 - b0, -1.0, u + (int64_t)b0 * cols + b1,
				     cols, errs, rows, 1.0, wt + (int64_t)b1 * rows, rows);
	}
	for (int64_t r = 0; r < rows; r++)
		for (int64_t i = 0; i < cols; i++)
			w[r * cols + i] = (float)wt[i * rows + r];
	rc = 0;
out:
	free(h);
	free(u);
	free(wt);
	free(errs);
	free(steps);
	free(zeros);
	return rc;
}
