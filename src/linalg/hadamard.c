/* Walsh-Hadamard transforms, the any-width orthogonal Hadamard, and seeded random
 * orthogonal matrices. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "catscope/alloc.h"
#include "catscope/linalg.h"
#include "catscope/parallel.h"

bool
linalg_is_pow2(int n)
{
	return n >= 1 && (n & (n - 1)) == 0;
}

int
linalg_pow2_factor(int n)
{
	return n & -n;
}

/* The orthonormal Walsh-Hadamard butterflies, for float and double. */
#define FWHT_BODY(type, x, n)                                           \
	do {                                                            \
		for (int h = 1; h < (n); h *= 2)                        \
			for (int i = 0; i < (n); i += 2 * h)            \
				for (int j = i; j < i + h; j++) {       \
					type a = (x)[j], b = (x)[j + h]; \
									\
					(x)[j] = a + b;                 \
					(x)[j + h] = a - b;             \
				}                                       \
	} while (0)

void
linalg_fwht(float *x, int n)
{
	float norm = 1.0f / sqrtf((float)n);

	FWHT_BODY(float, x, n);
	for (int i = 0; i < n; i++)
		x[i] *= norm;
}

void
linalg_fwht_double(double *x, int n)
{
	double norm = 1.0 / sqrt((double)n);

	FWHT_BODY(double, x, n);
	for (int i = 0; i < n; i++)
		x[i] *= norm;
}

/* Orthonormal DCT-II of size q: c[k*q + n] = alpha_k cos(pi (2n + 1) k / (2q)). */
static float *
dct_matrix(int q)
{
	float *c = alloc_array((size_t)q * q, sizeof(*c));

	for (int k = 0; k < q; k++) {
		double alpha = k == 0 ? sqrt(1.0 / q) : sqrt(2.0 / q);

		for (int n = 0; n < q; n++)
			c[(int64_t)k * q + n] = (float)(alpha * cos(M_PI * (2 * n + 1) * k / (2.0 * q)));
	}
	return c;
}

/* Butterflies on contiguous q-vectors: x viewed as p x q, Hadamard along p. For one
 * (i, h) the pairs (j, j + h), j in [i, i + h), cover the contiguous range
 * [i q, (i + h) q) and that range shifted by h q. The loop therefore runs over plain
 * contiguous floats and vectorizes for any q. */
static void
fwht_strided(float *x, int p, int q)
{
	float norm = 1.0f / sqrtf((float)p);

	for (int64_t h = 1; h < p; h *= 2)
		for (int64_t i = 0; i < p; i += 2 * h) {
			float *restrict u = x + i * q;
			float *restrict v = x + (i + h) * q;

			for (int64_t e = 0; e < h * q; e++) {
				float a = u[e], b = v[e];

				u[e] = a + b;
				v[e] = a - b;
			}
		}
	if (p > 1)
		for (int64_t i = 0; i < (int64_t)p * q; i++)
			x[i] *= norm;
}

/* Rows per DCT product: one product per batch keeps the calls large, and in place
 * the batch is copied aside first. */
#define HADAMARD_BATCH_ROWS 256

/* The odd factor q of one block width and its DCT matrix (NULL when q = 1). */
struct hadamard_factor {
	int width, p, q;
	float *dct;
};

static void
hadamard_factor_init(struct hadamard_factor *f, int width)
{
	f->width = width;
	f->p = linalg_pow2_factor(width);
	f->q = width / f->p;
	f->dct = f->q > 1 ? dct_matrix(f->q) : NULL;
}

/* Every q-segment s of a block becomes C s (or C^T s): the block's segments as the rows
 * of a p x q matrix S give S C^T (or S C). out may equal x. */
static void
hadamard_dct(const float *x, float *out, int64_t rows, int64_t ld, int width, int block,
	     const struct hadamard_factor *body, const struct hadamard_factor *tail,
	     bool transpose)
{
	bool in_place = x == out;
	float *seg = NULL;

	if (in_place)
		seg = alloc_array((size_t)HADAMARD_BATCH_ROWS * width, sizeof(*seg));
	for (int64_t r0 = 0; r0 < rows; r0 += HADAMARD_BATCH_ROWS) {
		int nr = rows - r0 < HADAMARD_BATCH_ROWS ? (int)(rows - r0) : HADAMARD_BATCH_ROWS;
		const float *src = x + r0 * ld;
		int64_t src_ld = ld;

		if (in_place) {
			for (int r = 0; r < nr; r++)
				memcpy(seg + (int64_t)r * width, x + (r0 + r) * ld, sizeof(*seg) * width);
			src = seg;
			src_ld = width;
		}
		/* One block over contiguous rows: the segments of the whole batch form a
		 * single (nr p) x q matrix. */
		if (block == width && ld == width && src_ld == width) {
			linalg_sgemm(false, !transpose, nr * body->p, body->q, body->q, 1.0f, src,
				     body->q, body->dct, body->q, 0.0f, out + r0 * ld, body->q);
			continue;
		}
		for (int r = 0; r < nr; r++)
			for (int start = 0; start < width; start += block) {
				const struct hadamard_factor *f = start + block <= width ? body : tail;

				if (f->q == 1)
					continue;
				linalg_sgemm(false, !transpose, f->p, f->q, f->q, 1.0f,
					     src + r * src_ld + start, f->q, f->dct, f->q, 0.0f,
					     out + (r0 + r) * ld + start, f->q);
			}
	}
	free(seg);
}

struct butterfly_pass {
	const float *x;        /* source of the blocks no DCT wrote, or NULL in place */
	float *out;
	int64_t ld;
	int width, block;
	const struct hadamard_factor *body, *tail;
};

static void
butterfly_part(void *ctx, int part, int64_t begin, int64_t end)
{
	const struct butterfly_pass *bp = ctx;

	(void)part;
	for (int64_t r = begin; r < end; r++)
		for (int start = 0; start < bp->width; start += bp->block) {
			const struct hadamard_factor *f = start + bp->block <= bp->width ? bp->body
											 : bp->tail;
			float *seg = bp->out + r * bp->ld + start;

			if (bp->x != NULL && f->q == 1)
				memcpy(seg, bp->x + r * bp->ld + start, sizeof(*seg) * f->width);
			fwht_strided(seg, f->p, f->q);
		}
}

void
linalg_hadamard_blocks(const float *x, float *out, int64_t rows, int64_t ld, int width,
		       int block, bool transpose)
{
	struct hadamard_factor body, tail;
	struct butterfly_pass bp = { .x = x == out ? NULL : x, .out = out, .ld = ld,
				     .width = width, .block = block, .body = &body,
				     .tail = &tail };
	int rest = width % block;

	hadamard_factor_init(&body, block);
	hadamard_factor_init(&tail, rest > 0 ? rest : block);
	if (body.q > 1 || tail.q > 1)
		hadamard_dct(x, out, rows, ld, width, block, &body, &tail, transpose);
	parallel_for(rows, parallel_parts(rows, rows * width), butterfly_part, &bp);
	free(body.dct);
	free(tail.dct);
}

void
linalg_hadamard_rows(float *x, int rows, int ld, int width, bool transpose)
{
	linalg_hadamard_blocks(x, x, rows, ld, width, width, transpose);
}

/* Largest total of per-part XOR-diagonal sums before linalg_hadamard_diagonal stops
 * splitting its work: each part sums into its own p q^2 doubles. */
#define HADAMARD_DIAGONAL_SPLIT_BYTES ((size_t)64 << 20)

/* Sums the q x q blocks of sigma along XOR diagonals for the block rows [begin, end)
 * into this part's own sums, so that parts never write the same memory. */
struct diagonal_pass {
	const double *sigma;
	int64_t ld;
	int p, q;
	double *z;             /* parts x p q q */
};

static void
diagonal_part(void *ctx, int part, int64_t begin, int64_t end)
{
	const struct diagonal_pass *dp = ctx;
	int64_t p = dp->p, q = dp->q;
	double *z = dp->z + part * p * q * q;

	for (int64_t cb = begin; cb < end; cb++)
		for (int64_t e = 0; e < q; e++) {
			const double *row = dp->sigma + (cb * q + e) * dp->ld;

			for (int64_t m = 0; m < p; m++) {
				const double *block = row + (cb ^ m) * q;
				double *zm = z + (m * q + e) * q;

				for (int f = 0; f < q; f++)
					zm[f] += block[f];
			}
		}
}

void
linalg_hadamard_diagonal(const double *sigma, int64_t ld, int width, double *diag)
{
	int p = linalg_pow2_factor(width);
	int q = width / p;
	size_t z_size = (size_t)p * q * q;
	int parts = parallel_parts(p, (int64_t)width * width);
	struct diagonal_pass dp = { .sigma = sigma, .ld = ld, .p = p, .q = q };
	double *z, *v = alloc_array(p, sizeof(*v));
	float *c = q > 1 ? dct_matrix(q) : NULL;

	/* With index i = a q + b, H = (H_p / sqrt(p)) (x) C, and H_p[a][c] H_p[a][c'] is
	 * (-1)^popcount(a & (c ^ c')). So diag_(a,b) is 1/p times the Walsh-Hadamard
	 * transform over m of (C Z_m C^T)_bb, where Z_m = sum_c S_(c, c^m) sums the q x q
	 * blocks along the XOR diagonal m: d^2 additions in all. The parts split the block
	 * rows c and add their sums in part order, so the result does not depend on the
	 * thread count. */
	if ((size_t)parts * z_size * sizeof(*z) > HADAMARD_DIAGONAL_SPLIT_BYTES)
		parts = 1;
	dp.z = z = alloc_zeroed((size_t)parts * z_size, sizeof(*z));
	parallel_for(p, parts, diagonal_part, &dp);
	for (int part = 1; part < parts; part++)
		for (size_t i = 0; i < z_size; i++)
			z[i] += z[(size_t)part * z_size + i];
	for (int b = 0; b < q; b++) {
		for (int64_t m = 0; m < p; m++) {
			const double *zm = z + m * q * q;
			double sum = 0;

			if (c == NULL) {
				sum = zm[0];
			} else {
				for (int e = 0; e < q; e++)
					for (int f = 0; f < q; f++)
						sum += (double)c[b * q + e] * zm[e * q + f] * c[b * q + f];
			}
			v[m] = sum;
		}
		/* The orthonormal transform carries 1 / sqrt(p) of the 1 / p. */
		linalg_fwht_double(v, p);
		for (int a = 0; a < p; a++)
			diag[(int64_t)a * q + b] = v[a] / sqrt((double)p);
	}
	free(z);
	free(v);
	free(c);
}

void
linalg_hadamard_matrix(int width, float *out)
{
	/* Row i of H is H e_i transposed, so transform the identity with H^T. */
	memset(out, 0, sizeof(*out) * width * width);
	for (int64_t i = 0; i < width; i++)
		out[i * width + i] = 1;
	linalg_hadamard_rows(out, width, width, width, true);
}

uint64_t
linalg_rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double
linalg_rng_normal(uint64_t *state)
{
	/* Uniforms in (0, 1] from the top 53 bits, so that log never gets zero. */
	double u1 = ((linalg_rng_next(state) >> 11) + 1.0) * 0x1.0p-53;
	double u2 = (linalg_rng_next(state) >> 11) * 0x1.0p-53;

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

int
linalg_random_orthogonal(int n, uint64_t seed, double *q, struct error *err)
{
	double *tau = alloc_array(n, sizeof(*tau));
	double *rdiag = alloc_array(n, sizeof(*rdiag));
	uint64_t state = seed;
	lapack_int info;

	for (int64_t i = 0; i < (int64_t)n * n; i++)
		q[i] = linalg_rng_normal(&state);
	info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, q, n, tau);
	if (info == 0) {
		for (int64_t i = 0; i < n; i++)
			rdiag[i] = q[i * n + i];
		info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, q, n, tau);
	}
	if (info != 0) {
		free(tau);
		free(rdiag);
		return error_set(err, "random orthogonal %d x %d: QR failed (info %d)", n, n,
				 (int)info);
	}
	/* Column j times sign(R_jj) makes the factorisation unique, hence Haar. */
	for (int64_t i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			if (rdiag[j] < 0)
				q[i * n + j] = -q[i * n + j];
	free(tau);
	free(rdiag);
	return 0;
}
