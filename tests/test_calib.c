/* Tests of calibration on the real stories260K model and TinyStories text: statistics
 * against a scalar reference computed here, the cache round trip, corruption and
 * truncation, the model check, reproducibility and interrupted writes. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/calib.h"
#include "catscope/calib_cache.h"
#include "catscope/hash.h"
#include "catscope/model_load.h"
#include "catscope/testutil.h"
#include "cache_format.h"
#include "calib_impl.h"

#define TEST_CTX 128
#define TEST_TOKENS 512 /* four windows */
#define TEXT_PREFIX_BYTES 32768

/* This cmocka has no assert_double_equal. */
#define assert_close(a, b, tolerance) assert_true(fabs((double)(a) - (double)(b)) <= (tolerance))

static struct model *shared_model;
static int32_t *shared_ids;
static size_t shared_n_ids;
static char scratch[4096];

static int
setup_group(void **state)
{
	struct error err;
	FILE *f;
	char *text = alloc_bytes(TEXT_PREFIX_BYTES);
	size_t length;

	shared_model = model_load(testutil_data_path("stories260K.gguf"), &err);
	if (shared_model == NULL) {
		fprintf(stderr, "cannot load the real model: %s\n", err.message);
		return -1;
	}
	f = fopen(testutil_data_path("tinystories_train_sample.txt"), "rb");
	if (f == NULL) {
		fprintf(stderr, "cannot open the real text %s\n",
			testutil_data_path("tinystories_train_sample.txt"));
		return -1;
	}
	length = fread(text, 1, TEXT_PREFIX_BYTES, f);
	fclose(f);
	if (tokenizer_encode(shared_model->tokenizer, text, length, true, &shared_ids, &shared_n_ids,
			     &err) != 0) {
		fprintf(stderr, "tokenizing failed: %s\n", err.message);
		return -1;
	}
	free(text);
	snprintf(scratch, sizeof(scratch), "%s", testutil_scratch_dir());
	return 0;
}

static int
teardown_group(void **state)
{
	char command[8300];

	model_free(shared_model);
	free(shared_ids);
	snprintf(command, sizeof(command), "rm -rf '%s'", scratch);
	return system(command) == 0 ? 0 : -1;
}

static const char *
scratch_path(const char *name)
{
	static char path[2][8192];
	static int turn;

	turn ^= 1;
	snprintf(path[turn], sizeof(path[turn]), "%s/%s", scratch, name);
	return path[turn];
}

static struct calib_result *
run_calibration(int sample_size, uint64_t seed)
{
	struct calib_options options = { .max_tokens = TEST_TOKENS, .sample_size = sample_size,
					 .seed = seed };
	struct error err;
	struct calib_result *r;

	r = calib_run(shared_model, shared_ids, shared_n_ids, TEST_CTX, &options, NULL, &err);
	if (r == NULL)
		fail_msg("calib_run failed: %s", err.message);
	if (calib_result_add_text(r, testutil_data_path("tinystories_train_sample.txt"), &err) != 0)
		fail_msg("recording the text failed: %s", err.message);
	return r;
}

static void
write_cache(const char *path, const struct calib_result *r)
{
	struct error err;

	if (calib_cache_write(path, r, &err) != 0)
		fail_msg("writing %s failed: %s", path, err.message);
}

/* Every site's rows of every window, copied by a hook that does nothing else. */
struct capture {
	float *rows[64];
	size_t n_rows[64];
	int dims[64];
};

static void
capture_site(void *ctx, int block, enum site_kind kind, float *x, int n_tokens, int dim)
{
	struct capture *c = ctx;
	int s = block * SITE_KIND_COUNT + kind;

	c->rows[s] = alloc_resize(c->rows[s], (c->n_rows[s] + n_tokens) * dim, sizeof(float));
	memcpy(c->rows[s] + c->n_rows[s] * dim, x, (size_t)n_tokens * dim * sizeof(float));
	c->n_rows[s] += n_tokens;
	c->dims[s] = dim;
}

static void
capture_windows(struct capture *c)
{
	struct model_hooks hooks = { .ctx = c, .site = capture_site };
	struct model_workspace *ws = model_workspace_new(&shared_model->config, TEST_CTX, TEST_CTX);
	struct model_kv_cache *cache = model_kv_cache_new(&shared_model->config, TEST_CTX);
	struct error err;

	memset(c, 0, sizeof(*c));
	for (int w = 0; w < TEST_TOKENS / TEST_CTX; w++) {
		cache->length = 0;
		if (model_forward(shared_model, NULL, ws, cache, shared_ids + w * TEST_CTX, TEST_CTX, NULL,
				  &hooks, &err) != 0)
			fail_msg("forward pass failed: %s", err.message);
	}
	model_workspace_free(ws);
	model_kv_cache_free(cache);
}

/* Compares stats with plain double loops over the captured rows. Off-diagonal entries
 * of E[x x^T] can be near zero, so their error is measured against
 * sqrt(E[x_i^2] E[x_j^2]), the bound Cauchy-Schwarz gives them. */
static void
assert_stats_match_rows(const struct site_stats *s, const float *rows, size_t n, int d,
			const char *label)
{
	double *sxx = alloc_zeroed((size_t)d * d, sizeof(double));
	double *sx = alloc_zeroed((size_t)d, sizeof(double));
	float *amax = alloc_zeroed((size_t)d, sizeof(float));
	double worst = 0.0;

	for (size_t t = 0; t < n; t++) {
		const float *x = rows + t * d;

		for (int i = 0; i < d; i++) {
			sx[i] += x[i];
			amax[i] = fabsf(x[i]) > amax[i] ? fabsf(x[i]) : amax[i];
			for (int j = 0; j < d; j++)
				sxx[(size_t)i * d + j] += (double)x[i] * x[j];
		}
	}
	assert_int_equal(s->dim, d);
	assert_int_equal(s->n_tokens, n);
	for (int i = 0; i < d; i++) {
		double scale_i = sqrt(sxx[(size_t)i * d + i] / n);

		for (int j = 0; j < d; j++) {
			double ref = sxx[(size_t)i * d + j] / n;
			double scale = scale_i * sqrt(sxx[(size_t)j * d + j] / n);
			double e = fabs(s->second_moment[(size_t)i * d + j] - ref) / scale;

			worst = e > worst ? e : worst;
		}
		if (fabs(s->mean[i] - sx[i] / n) > 1e-6 * scale_i)
			fail_msg("%s: mean[%d] %.9g, reference %.9g", label, i, s->mean[i], sx[i] / n);
		if (s->absmax[i] != amax[i])
			fail_msg("%s: absmax[%d] %.9g, reference %.9g", label, i, s->absmax[i], amax[i]);
	}
	if (worst > 1e-6)
		fail_msg("%s: E[x x^T] relative error %.3g exceeds 1e-6", label, worst);
	free(sxx);
	free(sx);
	free(amax);
}

static void
stats_match_scalar_reference(void **state)
{
	struct capture c;
	struct calib_result *r = run_calibration(CALIB_DEFAULT_SAMPLE, 7);
	const char *path = scratch_path("reference.cache");
	struct calib_cache *cache;
	struct error err;
	char label[64];

	capture_windows(&c);
	write_cache(path, r);
	cache = calib_cache_open(path, shared_model, &err);
	if (cache == NULL)
		fail_msg("opening failed: %s", err.message);
	for (int s = 0; s < r->n_blocks * SITE_KIND_COUNT; s++) {
		const struct site_stats *loaded;
		enum site_kind kind = (enum site_kind)(s % SITE_KIND_COUNT);

		calib_site_label(label, sizeof(label), s / SITE_KIND_COUNT, kind);
		assert_stats_match_rows(&r->sites[s], c.rows[s], c.n_rows[s], c.dims[s], label);
		loaded = calib_cache_site(cache, s / SITE_KIND_COUNT, kind, &err);
		if (loaded == NULL)
			fail_msg("loading %s failed: %s", label, err.message);
		assert_stats_match_rows(loaded, c.rows[s], c.n_rows[s], c.dims[s], label);
		/* Fewer tokens than the reservoir: the sample is every token, in order. */
		assert_int_equal(loaded->n_sample, TEST_TOKENS);
		assert_memory_equal(loaded->sample, c.rows[s], (size_t)TEST_TOKENS * c.dims[s] * 4);
		free(c.rows[s]);
	}
	calib_cache_close(cache);
	calib_result_free(r);
}

static void
concentration_terms_match_reference(void **state)
{
	struct capture c;
	struct calib_result *r = run_calibration(0, 0);

	capture_windows(&c);
	for (int s = 0; s < r->n_blocks * SITE_KIND_COUNT; s++) {
		double norm = 0.0, sym = 0.0, asym = 0.0;
		int d = c.dims[s];

		for (size_t t = 0; t < c.n_rows[s]; t++) {
			const float *x = c.rows[s] + t * d;
			float lo = x[0], hi = x[0], amax = 0.0f;

			for (int i = 0; i < d; i++) {
				norm += (double)x[i] * x[i];
				lo = fminf(lo, x[i]);
				hi = fmaxf(hi, x[i]);
				amax = fmaxf(amax, fabsf(x[i]));
			}
			sym += 4.0 * (double)amax * amax;
			asym += ((double)hi - lo) * ((double)hi - lo);
		}
		assert_close(r->sites[s].mean_sq_norm, norm / c.n_rows[s], 1e-9 * norm / c.n_rows[s]);
		assert_close(r->sites[s].mean_sq_range_sym, sym / c.n_rows[s], 1e-9 * sym / c.n_rows[s]);
		assert_close(r->sites[s].mean_sq_range_asym, asym / c.n_rows[s],
				    1e-9 * asym / c.n_rows[s]);
		assert_int_equal(r->sites[s].n_sample, 0);
		free(c.rows[s]);
	}
	calib_result_free(r);
}

static void
nonfinite_tokens_excluded(void **state)
{
	struct calib_accumulator acc;
	struct site_stats s;
	float x[3 * 2] = { 1.0f, -2.0f, NAN, 5.0f, 3.0f, INFINITY };
	float y[2] = { 1.0f, -2.0f };
	double scratch_rows[3 * 2];

	calib_accumulator_init(&acc, 2, 4, 1);
	calib_accumulator_add(&acc, x, 3, scratch_rows);
	calib_accumulator_add(&acc, y, 1, scratch_rows);
	calib_accumulator_finish(&acc, &s);
	assert_int_equal(s.n_tokens, 2);
	assert_int_equal(s.nonfinite, 2);
	assert_close(s.second_moment[0], 1.0, 0.0);
	assert_close(s.second_moment[1], -2.0, 0.0);
	assert_close(s.second_moment[2], -2.0, 0.0);
	assert_close(s.second_moment[3], 4.0, 0.0);
	assert_close(s.mean[0], 1.0, 0.0);
	assert_true(s.absmax[1] == 2.0f);
	assert_close(s.mean_sq_range_sym, 16.0, 0.0);
	assert_close(s.mean_sq_range_asym, 9.0, 0.0);
	assert_int_equal(s.n_sample, 2);
	calib_site_stats_clear(&s);
}

static void
round_trip_keeps_everything(void **state)
{
	struct calib_result *r = run_calibration(16, 3);
	const char *path = scratch_path("round.cache");
	const struct calib_provenance *p;
	struct calib_cache *cache;
	struct error err;

	write_cache(path, r);
	cache = calib_cache_open(path, NULL, &err);
	if (cache == NULL)
		fail_msg("opening failed: %s", err.message);
	p = calib_cache_provenance(cache);
	assert_int_equal(p->fingerprint, shared_model->fingerprint);
	assert_int_equal(p->config.hidden_dim, shared_model->config.hidden_dim);
	assert_int_equal(p->n_tokens, TEST_TOKENS);
	assert_int_equal(p->ctx, TEST_CTX);
	assert_int_equal(p->n_windows, TEST_TOKENS / TEST_CTX);
	assert_int_equal(p->seed, 3);
	assert_int_equal(p->sample_size, 16);
	assert_string_equal(p->version, PACKAGE_VERSION);
	assert_int_equal(p->n_texts, 1);
	assert_string_equal(p->texts[0].name, r->provenance.texts[0].name);
	assert_int_equal(p->texts[0].size, 2097152);
	assert_int_equal(p->texts[0].hash, r->provenance.texts[0].hash);
	assert_int_equal(calib_cache_verify(cache, &err), 0);
	for (int s = 0; s < r->n_blocks * SITE_KIND_COUNT; s++) {
		const struct site_stats *a = &r->sites[s];
		const struct site_stats *b = calib_cache_site(cache, s / 4, (enum site_kind)(s % 4), &err);
		size_t d = (size_t)a->dim;

		assert_non_null(b);
		assert_ptr_equal(b, calib_cache_site(cache, s / 4, (enum site_kind)(s % 4), &err));
		assert_int_equal(b->n_tokens, a->n_tokens);
		assert_int_equal(b->nonfinite, a->nonfinite);
		assert_true(b->mean_sq_norm == a->mean_sq_norm);
		assert_true(b->mean_sq_range_sym == a->mean_sq_range_sym);
		assert_true(b->mean_sq_range_asym == a->mean_sq_range_asym);
		assert_memory_equal(b->mean, a->mean, d * sizeof(double));
		assert_memory_equal(b->absmax, a->absmax, d * sizeof(float));
		assert_int_equal(b->n_sample, 16);
		assert_memory_equal(b->sample, a->sample, 16 * d * sizeof(float));
		/* The second moment is stored as float32. */
		for (size_t i = 0; i < d * d; i++)
			assert_true(b->second_moment[i] == (double)(float)a->second_moment[i]);
		calib_cache_release(cache, s / 4, (enum site_kind)(s % 4));
	}
	calib_cache_close(cache);
	calib_result_free(r);
}

static long
file_size_of(const char *path)
{
	FILE *f = fopen(path, "rb");
	long size;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fclose(f);
	return size;
}

static void
copy_file(const char *from, const char *to, long length)
{
	FILE *in = fopen(from, "rb");
	FILE *out = fopen(to, "wb");
	char *buffer = alloc_bytes((size_t)length + 1);

	assert_non_null(in);
	assert_non_null(out);
	assert_int_equal(fread(buffer, 1, (size_t)length, in), (size_t)length);
	assert_int_equal(fwrite(buffer, 1, (size_t)length, out), (size_t)length);
	fclose(in);
	fclose(out);
	free(buffer);
}

static void
flip_byte(const char *path, long offset)
{
	FILE *f = fopen(path, "r+b");
	int c;

	assert_non_null(f);
	fseek(f, offset, SEEK_SET);
	c = fgetc(f);
	fseek(f, offset, SEEK_SET);
	fputc(c ^ 0x10, f);
	fclose(f);
}

/* Opens path and verifies every record; expects a failure whose message has text. */
static void
assert_cache_rejected(const char *path, const char *expected)
{
	struct error err;
	struct calib_cache *cache;

	error_clear(&err);
	cache = calib_cache_open(path, NULL, &err);
	if (cache != NULL && calib_cache_verify(cache, &err) == 0)
		fail_msg("%s was accepted, expected an error about '%s'", path, expected);
	calib_cache_close(cache);
	if (strstr(err.message, expected) == NULL)
		fail_msg("expected '%s' in the error, got: %s", expected, err.message);
}

static void
truncation_detected(void **state)
{
	struct calib_result *r = run_calibration(16, 1);
	const char *good = scratch_path("whole.cache");
	const char *cut = scratch_path("cut.cache");
	long size, header_size;
	FILE *f;
	unsigned char b[4];

	write_cache(good, r);
	size = file_size_of(good);
	f = fopen(good, "rb");
	fseek(f, 12, SEEK_SET);
	assert_int_equal(fread(b, 1, 4, f), 4);
	fclose(f);
	header_size = b[0] | b[1] << 8 | b[2] << 16 | (long)b[3] << 24;

	const long lengths[] = { 0, 10, 63, 64, header_size - 1, header_size, header_size + 7,
				 size / 2, size - 1 };
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		copy_file(good, cut, lengths[i]);
		assert_cache_rejected(cut, "truncated");
	}
	calib_result_free(r);
}

static void
flipped_bytes_named(void **state)
{
	struct calib_result *r = run_calibration(16, 1);
	const char *good = scratch_path("good.cache");
	const char *bad = scratch_path("bad.cache");
	long size, header_size, offset;
	struct calib_cache *cache;
	struct error err;
	FILE *f;
	unsigned char b[4];

	write_cache(good, r);
	size = file_size_of(good);
	f = fopen(good, "rb");
	fseek(f, 12, SEEK_SET);
	assert_int_equal(fread(b, 1, 4, f), 4);
	fclose(f);
	header_size = b[0] | b[1] << 8 | b[2] << 16 | (long)b[3] << 24;

	/* The fingerprint, a provenance byte, an index byte and the checksum itself. */
	const long header_bytes[] = { 20, 70, header_size - 8 - 96 * 20 + 40, header_size - 200,
				      header_size - 1 };
	for (size_t i = 0; i < sizeof(header_bytes) / sizeof(header_bytes[0]); i++) {
		copy_file(good, bad, size);
		flip_byte(bad, header_bytes[i]);
		assert_cache_rejected(bad, "header checksum mismatch");
	}
	copy_file(good, bad, size);
	flip_byte(bad, 0);
	assert_cache_rejected(bad, "bad magic");

	/* A byte in the middle of the record of blk.3.ffn_in: found on open-all and on load. */
	cache = calib_cache_open(good, NULL, &err);
	assert_non_null(cache);
	offset = header_size;
	for (int s = 0; s < 3 * 4 + SITE_FFN_IN; s++)
		offset += (long)calib_cache_summary(cache, s / 4, (enum site_kind)(s % 4))->compressed_size;
	offset += (long)calib_cache_summary(cache, 3, SITE_FFN_IN)->compressed_size / 2;
	calib_cache_close(cache);
	copy_file(good, bad, size);
	flip_byte(bad, offset);
	assert_cache_rejected(bad, "record of site blk.3.ffn_in is corrupt");
	cache = calib_cache_open(bad, NULL, &err);
	assert_non_null(cache);
	assert_non_null(calib_cache_site(cache, 3, SITE_ATTN_IN, &err));
	assert_null(calib_cache_site(cache, 3, SITE_FFN_IN, &err));
	assert_non_null(strstr(err.message, "record of site blk.3.ffn_in is corrupt"));
	calib_cache_close(cache);
	calib_result_free(r);
}

/* A whole cache file in memory, for tests that rewrite its fields. */
struct cache_bytes {
	unsigned char *data;
	size_t size;
	uint32_t header_size;
	uint32_t n_sites;
	size_t index;       /* offset of the first index entry */
};

static void
cache_load_bytes(const char *path, struct cache_bytes *b)
{
	b->size = (size_t)file_size_of(path);
	b->data = alloc_bytes(b->size);
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fread(b->data, 1, b->size, f), b->size);
	fclose(f);
	b->header_size = cache_get_u32(b->data + 12);
	b->n_sites = cache_get_u32(b->data + 56);
	b->index = CACHE_FIXED_SIZE + cache_get_u32(b->data + 60);
}

static unsigned char *
cache_entry_bytes(struct cache_bytes *b, int site)
{
	return b->data + b->index + (size_t)site * CACHE_INDEX_ENTRY;
}

/* Writes b to path with the record checksums and the header checksum recomputed from
 * the current bytes, so that the reader gets past them to the check under test. */
static void
cache_save_bytes(const char *path, struct cache_bytes *b)
{
	for (uint32_t s = 0; s < b->n_sites; s++) {
		unsigned char *e = cache_entry_bytes(b, (int)s);
		uint64_t offset = cache_get_u64(e + CACHE_ENTRY_OFFSET);
		uint64_t length = cache_get_u64(e + CACHE_ENTRY_COMPRESSED);

		if (offset <= b->size && length <= b->size - offset)
			cache_put_u64(e + CACHE_ENTRY_CHECKSUM, hash_update(HASH_SEED, b->data + offset,
									     length));
	}
	cache_put_u64(b->data + b->header_size - CACHE_CHECKSUM_SIZE,
		      hash_update(HASH_SEED, b->data, b->header_size - CACHE_CHECKSUM_SIZE));
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(b->data, 1, b->size, f), b->size);
	fclose(f);
}

/* Opens path and loads every site until one fails; expects that error to start with
 * the path and to contain expected. */
static void
assert_cache_load_rejected(const char *path, const char *expected)
{
	struct error err;
	struct calib_cache *cache;
	int failed = 0;

	error_clear(&err);
	cache = calib_cache_open(path, NULL, &err);
	if (cache == NULL) {
		failed = 1;
	} else {
		for (int s = 0; s < calib_cache_n_blocks(cache) * SITE_KIND_COUNT && !failed; s++)
			failed = calib_cache_site(cache, s / SITE_KIND_COUNT,
						  (enum site_kind)(s % SITE_KIND_COUNT), &err) == NULL;
	}
	calib_cache_close(cache);
	if (!failed)
		fail_msg("%s was accepted, expected an error about '%s'", path, expected);
	if (strncmp(err.message, path, strlen(path)) != 0)
		fail_msg("the error does not start with the file name %s: %s", path, err.message);
	if (strstr(err.message, expected) == NULL)
		fail_msg("expected '%s' in the error, got: %s", expected, err.message);
}

/* Field values near 2^32 and 2^64 in the fixed header and the index. Each case
 * changes one field of a valid cache and expects the message that names it. */
static void
hostile_counts_named(void **state)
{
	static const struct {
		int entry;       /* -1: the fixed header */
		int offset;      /* byte offset in the header or the entry */
		int width;       /* 4 or 8 */
		uint64_t value;
		const char *expected;
	} cases[] = {
		{ -1, 56, 4, 0xfffffffcu, "corrupt header: 4294967292 sites" },
		{ -1, 56, 4, 0x80000000u, "corrupt header: 2147483648 sites" },
		{ -1, 60, 4, 0xffffffffu, "provenance of 4294967295 bytes" },
		{ -1, 12, 4, 0xffffffffu, "sizes disagree" },
		{ -1, 24, 4, 0xffffffffu, "corrupt header: shapes (dim -1" },
		{ -1, 24, 4, 0x7fffffffu, "corrupt header: shapes (dim 2147483647" },
		{ -1, 36, 4, 0x80000000u, "heads" },
		{ 0, CACHE_ENTRY_BLOCK, 4, 0xffffffffu, "names block 4294967295" },
		{ 0, CACHE_ENTRY_DIM, 4, 0xffffffffu, "dimension 4294967295" },
		{ 0, CACHE_ENTRY_DIM, 4, 0x80000040u, "dimension 2147483712" },
		{ 0, CACHE_ENTRY_N_SAMPLE, 4, 0xffffffffu, "sample count 4294967295" },
		{ 0, CACHE_ENTRY_N_SAMPLE, 4, 0x40000000u, "sample count 1073741824" },
		{ 0, CACHE_ENTRY_MAX_ABSMAX_CHANNEL, 4, 0xffffffffu, "largest channel 4294967295" },
		{ 0, CACHE_ENTRY_RAW, 8, UINT64_MAX, "record size 18446744073709551615" },
		{ 0, CACHE_ENTRY_RAW, 8, 1ull << 32, "record size 4294967296" },
		{ 1, CACHE_ENTRY_OFFSET, 8, UINT64_MAX - 7, "lies outside the file" },
		{ 1, CACHE_ENTRY_COMPRESSED, 8, UINT64_MAX, "lies outside the file" },
		{ 1, CACHE_ENTRY_COMPRESSED, 8, 1ull << 32, "lies outside the file" },
		{ 1, CACHE_ENTRY_COMPRESSED, 8, 0, "lies outside the file" },
	};
	struct calib_result *r = run_calibration(4, 1);
	const char *good = scratch_path("counts-good.cache");
	const char *bad = scratch_path("counts-bad.cache");
	struct cache_bytes b;

	write_cache(good, r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char *field;

		cache_load_bytes(good, &b);
		field = (cases[i].entry < 0 ? b.data : cache_entry_bytes(&b, cases[i].entry)) +
			cases[i].offset;
		if (cases[i].width == 4)
			cache_put_u32(field, (uint32_t)cases[i].value);
		else
			cache_put_u64(field, cases[i].value);
		cache_save_bytes(bad, &b);
		assert_cache_load_rejected(bad, cases[i].expected);
		free(b.data);
	}
	calib_result_free(r);
}

/* Rewrites the frame header of the zstd frame at packed so that it declares
 * content_size: an 8-byte size field and a 1 MiB window, blocks and checksum kept.
 * Returns the new frame in a new buffer and its size in *size. */
static unsigned char *
zstd_frame_declaring(const unsigned char *packed, size_t packed_size, uint64_t content_size,
		     size_t *size)
{
	static const int size_field_bytes[4] = { 0, 2, 4, 8 };
	unsigned char descriptor = packed[4];
	int single_segment = descriptor >> 5 & 1;
	int size_field = descriptor >> 6 == 0 ? single_segment : size_field_bytes[descriptor >> 6];
	static const int dict_bytes[4] = { 0, 1, 2, 4 };
	size_t old_header = 4 + 1 + (single_segment ? 0 : 1) + (size_t)dict_bytes[descriptor & 3] +
			    (size_t)size_field;
	size_t new_header = 4 + 1 + 1 + 8;
	unsigned char *frame = alloc_bytes(packed_size - old_header + new_header);

	assert_int_equal(descriptor & 3, 0);
	memcpy(frame, packed, 4);
	frame[4] = (unsigned char)(3 << 6 | (descriptor & 4)); /* 8-byte size, checksum flag kept */
	frame[5] = 10 << 3;                                 /* window 2^(10 + 10) bytes */
	cache_put_u64(frame + 6, content_size);
	memcpy(frame + new_header, packed + old_header, packed_size - old_header);
	*size = packed_size - old_header + new_header;
	return frame;
}

/* Replaces the last record of b (so no other offset moves) with record, and gives it
 * n_sample sample rows and the raw size that follows from them. */
static void
cache_replace_last_record(struct cache_bytes *b, const unsigned char *record, size_t record_size,
			  uint32_t n_sample)
{
	unsigned char *e = cache_entry_bytes(b, (int)b->n_sites - 1);
	uint64_t offset = cache_get_u64(e + CACHE_ENTRY_OFFSET);
	uint32_t dim = cache_get_u32(e + CACHE_ENTRY_DIM);

	b->data = alloc_resize(b->data, offset + record_size, 1);
	e = cache_entry_bytes(b, (int)b->n_sites - 1);
	memcpy(b->data + offset, record, record_size);
	b->size = offset + record_size;
	cache_put_u64(e + CACHE_ENTRY_COMPRESSED, record_size);
	cache_put_u32(e + CACHE_ENTRY_N_SAMPLE, n_sample);
	cache_put_u64(e + CACHE_ENTRY_RAW, cache_record_raw_size(dim, n_sample));
}

/* Builds the hostile record cases from a valid cache at good: the index declares
 * n_sample rows; with lie set, the frame header declares the same size too, but its
 * blocks still hold the original rows. */
static void
write_sample_count_lie(const char *good, const char *bad, uint32_t n_sample, int lie)
{
	struct cache_bytes b;
	unsigned char *e, *record;
	size_t record_size;

	cache_load_bytes(good, &b);
	e = cache_entry_bytes(&b, (int)b.n_sites - 1);
	record_size = cache_get_u64(e + CACHE_ENTRY_COMPRESSED);
	record = alloc_bytes(record_size);
	memcpy(record, b.data + cache_get_u64(e + CACHE_ENTRY_OFFSET), record_size);
	if (lie) {
		uint32_t dim = cache_get_u32(e + CACHE_ENTRY_DIM);
		unsigned char *rewritten = zstd_frame_declaring(record, record_size,
								cache_record_raw_size(dim, n_sample),
								&record_size);

		free(record);
		record = rewritten;
	}
	cache_replace_last_record(&b, record, record_size, n_sample);
	cache_save_bytes(bad, &b);
	free(record);
	free(b.data);
}

static void
record_size_mismatch_named(void **state)
{
	struct calib_result *r = run_calibration(4, 1);
	const char *good = scratch_path("mismatch-good.cache");
	const char *bad = scratch_path("mismatch-bad.cache");
	char label[64];
	char expected[128];

	write_cache(good, r);
	calib_site_label(label, sizeof(label), r->n_blocks - 1, SITE_FFN_DOWN);

	/* The index declares more sample rows than the record holds. */
	write_sample_count_lie(good, bad, 5, 0);
	snprintf(expected, sizeof(expected), "record of site %s is corrupt (its zstd frame declares", label);
	assert_cache_load_rejected(bad, expected);
	write_sample_count_lie(good, bad, 3, 0);
	assert_cache_load_rejected(bad, expected);

	/* The frame header agrees with the index, but its blocks hold fewer bytes. */
	write_sample_count_lie(good, bad, 5, 1);
	snprintf(expected, sizeof(expected), "record of site %s is corrupt", label);
	assert_cache_load_rejected(bad, expected);

	/* The frame itself is unchanged and still loads: the rewriting helpers are sound. */
	write_sample_count_lie(good, bad, 4, 1);
	struct error err;
	struct calib_cache *cache = calib_cache_open(bad, NULL, &err);

	assert_non_null(cache);
	assert_non_null(calib_cache_site(cache, r->n_blocks - 1, SITE_FFN_DOWN, &err));
	calib_cache_close(cache);
	calib_result_free(r);
}

/* A record larger than the 1 MiB the reader first allocates goes through the
 * buffer's growth and comes back exactly. The values are pseudo-random, so that zstd
 * cannot shrink the record much. */
static void
large_record_round_trip(void **state)
{
	struct calib_result *r = alloc_zeroed(1, sizeof(*r));
	struct model_config *c = &r->provenance.config;
	const char *path = scratch_path("large.cache");
	struct calib_cache *cache;
	const struct site_stats *loaded;
	struct error err;
	uint64_t x = 12345;

	r->n_blocks = 1;
	*c = shared_model->config;
	c->n_layers = 1;
	c->hidden_dim = 1024;
	r->provenance.texts = alloc_zeroed(1, sizeof(*r->provenance.texts));
	r->sites = alloc_zeroed(SITE_KIND_COUNT, sizeof(*r->sites));
	for (int k = 0; k < SITE_KIND_COUNT; k++) {
		struct site_stats *st = &r->sites[k];
		int d = k == SITE_FFN_DOWN ? c->hidden_dim
			: k == SITE_ATTN_OUT ? c->n_heads * c->head_dim : c->dim;

		st->dim = d;
		st->n_tokens = 300;
		st->n_sample = k == SITE_FFN_DOWN ? 300 : 0;
		st->mean = alloc_zeroed((size_t)d, sizeof(double));
		st->absmax = alloc_zeroed((size_t)d, sizeof(float));
		st->second_moment = alloc_zeroed((size_t)d * d, sizeof(double));
		st->sample = st->n_sample ? alloc_zeroed((size_t)st->n_sample * d, sizeof(float)) : NULL;
		for (size_t i = 0; i < (size_t)d; i++) {
			for (size_t j = i; j < (size_t)d; j++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				st->second_moment[i * d + j] = (float)(x >> 40) / (float)(1 << 24);
				st->second_moment[j * d + i] = st->second_moment[i * d + j];
			}
		}
		for (size_t i = 0; i < (size_t)st->n_sample * d; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			st->sample[i] = (float)(x >> 40) / (float)(1 << 20) - 8.0f;
		}
	}
	write_cache(path, r);

	cache = calib_cache_open(path, NULL, &err);
	assert_non_null(cache);
	assert_true(calib_cache_summary(cache, 0, SITE_FFN_DOWN)->raw_size > (2u << 20));
	loaded = calib_cache_site(cache, 0, SITE_FFN_DOWN, &err);
	if (loaded == NULL)
		fail_msg("loading the large record failed: %s", err.message);
	assert_int_equal(loaded->n_sample, 300);
	assert_memory_equal(loaded->second_moment, r->sites[SITE_FFN_DOWN].second_moment,
			    (size_t)1024 * 1024 * sizeof(double));
	assert_memory_equal(loaded->sample, r->sites[SITE_FFN_DOWN].sample,
			    (size_t)300 * 1024 * sizeof(float));
	calib_cache_close(cache);
	calib_result_free(r);
}

/* Loads every site of path in a child process and returns the rise of its peak RSS in
 * KiB; the child must exit cleanly after an error that contains expected. */
static long
load_rss_rise_kib(const char *path, const char *expected)
{
	int pipe_fd[2];
	long rise = -1;
	pid_t pid;
	int status;

	assert_int_equal(pipe(pipe_fd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rusage before, after;
		struct error err;
		struct calib_cache *cache;
		int failed = 0;

		close(pipe_fd[0]);
		getrusage(RUSAGE_SELF, &before);
		cache = calib_cache_open(path, NULL, &err);
		failed = cache == NULL;
		for (int s = 0; cache != NULL && s < calib_cache_n_blocks(cache) * SITE_KIND_COUNT &&
				!failed; s++)
			failed = calib_cache_site(cache, s / SITE_KIND_COUNT,
						  (enum site_kind)(s % SITE_KIND_COUNT), &err) == NULL;
		calib_cache_close(cache);
		getrusage(RUSAGE_SELF, &after);
		rise = after.ru_maxrss - before.ru_maxrss;
		if (write(pipe_fd[1], &rise, sizeof(rise)) != sizeof(rise))
			_exit(3);
		_exit(!failed ? 10 : strstr(err.message, expected) == NULL ? 11 : 0);
	}
	close(pipe_fd[1]);
	if (read(pipe_fd[0], &rise, sizeof(rise)) != sizeof(rise))
		rise = -1;
	close(pipe_fd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("loading %s: the child ended with wait status 0x%x (exit 10: accepted, "
			 "11: another message, other: crashed or out of memory)", path, status);
	return rise;
}

/* A record size of gigabytes, declared by the index alone or by the frame header as
 * well, must be rejected before the reader allocates it. When the frame header agrees,
 * the expansion limit rejects it first. With that limit lifted, the decompression
 * buffer must still grow only as far as the bytes the frame really holds. */
static void
huge_record_size_not_allocated(void **state)
{
	static const uint32_t n_samples[] = { 1u << 20, INT32_MAX / 2 };
	static const char *const frame_cases[] = { "differs", "agrees", "agrees, no limit" };
	struct calib_result *r = run_calibration(4, 1);
	const char *good = scratch_path("huge-good.cache");
	const char *bad = scratch_path("huge-bad.cache");
	long rise;

	write_cache(good, r);

	for (size_t i = 0; i < sizeof(n_samples) / sizeof(n_samples[0]); i++) {
		for (int lie = 0; lie <= 2; lie++) {
			const char *expected = lie == 1 ? "more than 32 times" : "is corrupt";

			if (lie == 2)
				assert_int_equal(setenv(CACHE_EXPANSION_VARIABLE, "1000000000000", 1), 0);
			write_sample_count_lie(good, bad, n_samples[i], lie > 0);
			rise = load_rss_rise_kib(bad, expected);
			unsetenv(CACHE_EXPANSION_VARIABLE);
			if (rise < 0 || rise > 32 * 1024)
				fail_msg("%u sample rows (frame header %s): peak RSS rose by %ld KiB, at "
					 "most 32 MiB expected", n_samples[i], frame_cases[lie], rise);
		}
	}
	calib_result_free(r);
}

/* Compresses size zero bytes into one zstd frame that declares its size, as the
 * writer's frames do. Zeros become RLE blocks, so the frame is tiny. */
static unsigned char *
zstd_zero_frame(uint64_t size, size_t *frame_size)
{
	static const unsigned char zeros[1 << 16];
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	size_t capacity = ZSTD_compressBound(1 << 16) + (size_t)(size >> 10);
	unsigned char *frame = alloc_bytes(capacity);
	ZSTD_outBuffer out = { frame, capacity, 0 };
	uint64_t left = size;

	assert_non_null(cctx);
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)));
	assert_false(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(cctx, size)));
	for (;;) {
		size_t chunk = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
		ZSTD_inBuffer in = { zeros, chunk, 0 };
		ZSTD_EndDirective mode = chunk == left ? ZSTD_e_end : ZSTD_e_continue;
		size_t rc;

		do {
			rc = ZSTD_compressStream2(cctx, &out, &in, mode);
			assert_false(ZSTD_isError(rc));
			assert_true(out.pos < out.size);
		} while (mode == ZSTD_e_end ? rc != 0 : in.pos < in.size);
		left -= chunk;
		if (mode == ZSTD_e_end)
			break;
	}
	ZSTD_freeCCtx(cctx);
	*frame_size = out.pos;
	return frame;
}

/* A genuine frame of zeros expands thousands of times, so a cache of a few KB could
 * make the reader allocate gigabytes. Such a record is rejected before its buffer is
 * allocated, with a model too, because a model does not bound the sample rows.
 * CATSCOPE_CACHE_MAX_EXPANSION lifts the limit, and the record then loads intact. */
static void
zero_record_expansion_limited(void **state)
{
	/* 60000 rows of the 172-wide ffn_down site: about 41 MB of zeros, above the
	 * 32 MiB that always loads. */
	const uint32_t n_sample = 60000;
	struct calib_result *r = run_calibration(4, 1);
	const char *good = scratch_path("zeros-good.cache");
	const char *bad = scratch_path("zeros-bad.cache");
	int last_block = r->n_blocks - 1;
	struct cache_bytes b;
	struct calib_cache *cache;
	const struct site_stats *loaded;
	struct error err;
	unsigned char *frame;
	size_t frame_size;
	uint64_t raw_size;
	char expected[256];
	long rise;

	write_cache(good, r);
	cache_load_bytes(good, &b);
	raw_size = cache_record_raw_size(cache_get_u32(cache_entry_bytes(&b, (int)b.n_sites - 1) +
						       CACHE_ENTRY_DIM), n_sample);
	assert_true(raw_size > (32u << 20));
	frame = zstd_zero_frame(raw_size, &frame_size);
	assert_true(frame_size * 32 < (32u << 20));
	cache_replace_last_record(&b, frame, frame_size, n_sample);
	cache_save_bytes(bad, &b);
	free(frame);
	free(b.data);

	snprintf(expected, sizeof(expected), "expands from %zu to %" PRIu64 " bytes, more than 32 "
		 "times", frame_size, raw_size);
	rise = load_rss_rise_kib(bad, expected);
	if (rise < 0 || rise > 16 * 1024)
		fail_msg("the rejected record raised the peak RSS by %ld KiB, at most 16 MiB expected",
			 rise);

	/* With the model: rejected too, and the message does not suggest the model. */
	cache = calib_cache_open(bad, shared_model, &err);
	assert_non_null(cache);
	assert_null(calib_cache_site(cache, last_block, SITE_FFN_DOWN, &err));
	assert_non_null(strstr(err.message, expected));
	assert_non_null(strstr(err.message, CACHE_EXPANSION_VARIABLE));
	assert_null(strstr(err.message, "open it with its model"));
	calib_cache_close(cache);

	/* Lifting the limit loads the record, all zeros. */
	assert_int_equal(setenv(CACHE_EXPANSION_VARIABLE, "100000", 1), 0);
	cache = calib_cache_open(bad, NULL, &err);
	assert_non_null(cache);
	loaded = calib_cache_site(cache, last_block, SITE_FFN_DOWN, &err);
	unsetenv(CACHE_EXPANSION_VARIABLE);
	if (loaded == NULL)
		fail_msg("with the limit lifted, loading failed: %s", err.message);
	assert_int_equal(loaded->n_sample, (int)n_sample);
	assert_true(loaded->sample[0] == 0.0f);
	assert_true(loaded->sample[(size_t)n_sample * loaded->dim - 1] == 0.0f);
	assert_true(loaded->second_moment[(size_t)loaded->dim * loaded->dim - 1] == 0.0);
	calib_cache_close(cache);
	calib_result_free(r);
}

/* A FIFO given as the cache is rejected at once; the alarm turns a hang in open()
 * into a failure. */
static void
fifo_cache_rejected(void **state)
{
	const char *path = scratch_path("fifo.cache");
	struct error err;

	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10);
	assert_null(calib_cache_open(path, NULL, &err));
	alarm(0);
	assert_non_null(strstr(err.message, path));
	assert_non_null(strstr(err.message, "not a regular file"));
	unlink(path);
}

static void
other_model_rejected(void **state)
{
	struct calib_result *r = run_calibration(0, 1);
	const char *path = scratch_path("model.cache");
	struct model *other;
	struct calib_cache *cache;
	struct error err;
	char expected[2][32];

	write_cache(path, r);
	other = model_load(testutil_data_path("stories260K.gguf"), &err);
	assert_non_null(other);
	other->blocks[2].linear[LINEAR_UP][5] += 0.001f;
	model_compute_fingerprint(other);
	assert_true(other->fingerprint != shared_model->fingerprint);

	cache = calib_cache_open(path, other, &err);
	assert_null(cache);
	snprintf(expected[0], sizeof(expected[0]), "%016" PRIx64, shared_model->fingerprint);
	snprintf(expected[1], sizeof(expected[1]), "%016" PRIx64, other->fingerprint);
	if (strstr(err.message, expected[0]) == NULL || strstr(err.message, expected[1]) == NULL)
		fail_msg("expected both fingerprints in: %s", err.message);
	cache = calib_cache_open(path, shared_model, &err);
	assert_non_null(cache);
	calib_cache_close(cache);
	model_free(other);
	calib_result_free(r);
}

static int
files_equal(const char *a, const char *b)
{
	long size = file_size_of(a);
	FILE *fa, *fb;
	int equal = 1;

	if (size != file_size_of(b))
		return 0;
	fa = fopen(a, "rb");
	fb = fopen(b, "rb");
	for (long i = 0; i < size && equal; i++)
		equal = fgetc(fa) == fgetc(fb);
	fclose(fa);
	fclose(fb);
	return equal;
}

static void
same_seed_identical_file(void **state)
{
	struct calib_result *a = run_calibration(16, 42);
	struct calib_result *b = run_calibration(16, 42);
	struct calib_result *c = run_calibration(16, 43);
	const char *pa = scratch_path("seed-a.cache");
	const char *pb = scratch_path("seed-b.cache");
	size_t bytes = 16 * sizeof(float) * (size_t)a->sites[0].dim;

	write_cache(pa, a);
	write_cache(pb, b);
	assert_true(files_equal(pa, pb));
	assert_memory_not_equal(a->sites[0].sample, c->sites[0].sample, bytes);
	write_cache(pb, c);
	assert_false(files_equal(pa, pb));
	calib_result_free(a);
	calib_result_free(b);
	calib_result_free(c);
}

static int
scratch_has_temp_file(void)
{
	DIR *dir = opendir(scratch);
	struct dirent *e;
	int found = 0;

	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL)
		found |= strstr(e->d_name, ".tmp.") != NULL;
	closedir(dir);
	return found;
}

static void
interrupted_write_keeps_old(void **state)
{
	struct calib_result *old = run_calibration(16, 1);
	struct calib_result *fresh = run_calibration(16, 2);
	struct calib_options options = { .sample_size = 4 };
	const char *path = scratch_path("kept.cache");
	const char *copy = scratch_path("kept-copy.cache");
	struct error err;

	write_cache(path, old);
	copy_file(path, copy, file_size_of(path));

	atomic_install_signal_cleanup();
	atomic_defer_signals(1);
	raise(SIGINT);
	assert_true(atomic_interrupted());
	assert_int_equal(calib_cache_write(path, fresh, &err), -1);
	assert_non_null(strstr(err.message, "interrupted"));
	assert_null(calib_run(shared_model, shared_ids, shared_n_ids, TEST_CTX, &options, NULL, &err));
	assert_non_null(strstr(err.message, "interrupted"));
	atomic_defer_signals(0);

	assert_true(files_equal(path, copy));
	assert_false(scratch_has_temp_file());
	calib_result_free(old);
	calib_result_free(fresh);
}

/* A child killed by SIGINT in the middle of writing leaves no temporary file. */
static void
killed_writer_leaves_no_temp(void **state)
{
	struct calib_result *r = run_calibration(CALIB_DEFAULT_SAMPLE, 1);
	const char *path = scratch_path("killed.cache");
	pid_t child;
	int status;

	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		atomic_install_signal_cleanup();
		for (;;)
			calib_cache_write(path, r, NULL);
	}
	usleep(200000);
	kill(child, SIGINT);
	waitpid(child, &status, 0);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGINT);
	assert_false(scratch_has_temp_file());
	calib_result_free(r);
}

static int
run_cli(const char *arguments, char *output, size_t size)
{
	const char *binary = getenv("CATSCOPE_BIN");
	char command[16384];
	FILE *p;
	size_t n;
	int status;

	snprintf(command, sizeof(command), "'%s' %s 2>&1", binary, arguments);
	p = popen(command, "r");
	assert_non_null(p);
	n = fread(output, 1, size - 1, p);
	output[n] = '\0';
	status = pclose(p);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void
cli_calibrate_and_info(void **state)
{
	static char output[65536];
	char arguments[12000];
	const char *path = scratch_path("cli.cache");
	char model[4096];

	if (getenv("CATSCOPE_BIN") == NULL)
		skip();
	snprintf(model, sizeof(model), "%s", testutil_data_path("stories260K.gguf"));
	snprintf(arguments, sizeof(arguments), "calibrate '%s' '%s' -o '%s' --ctx 256 --tokens 2048 "
		 "--sample 8 --seed 5", model, testutil_data_path("tinystories_train_sample.txt"),
		 path);
	if (run_cli(arguments, output, sizeof(output)) != 0)
		fail_msg("calibrate failed: %s", output);
	assert_non_null(strstr(output, "2048 (8 windows of 256)"));

	snprintf(arguments, sizeof(arguments), "info '%s' --model '%s'", path, model);
	if (run_cli(arguments, output, sizeof(output)) != 0)
		fail_msg("info failed: %s", output);
	assert_non_null(strstr(output, "all 20 records verified"));
	assert_non_null(strstr(output, "    4 ffn_down    172      2048"));

	flip_byte(path, file_size_of(path) - 3);
	snprintf(arguments, sizeof(arguments), "info '%s'", path);
	assert_int_equal(run_cli(arguments, output, sizeof(output)), 1);
	assert_non_null(strstr(output, "record of site blk.4.ffn_down is corrupt"));

	snprintf(arguments, sizeof(arguments), "calibrate '%s' '%s'", model,
		 testutil_data_path("tinystories_train_sample.txt"));
	assert_int_equal(run_cli(arguments, output, sizeof(output)), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stats_match_scalar_reference),
		cmocka_unit_test(concentration_terms_match_reference),
		cmocka_unit_test(nonfinite_tokens_excluded),
		cmocka_unit_test(round_trip_keeps_everything),
		cmocka_unit_test(truncation_detected),
		cmocka_unit_test(flipped_bytes_named),
		cmocka_unit_test(hostile_counts_named),
		cmocka_unit_test(record_size_mismatch_named),
		cmocka_unit_test(huge_record_size_not_allocated),
		cmocka_unit_test(zero_record_expansion_limited),
		cmocka_unit_test(large_record_round_trip),
		cmocka_unit_test(fifo_cache_rejected),
		cmocka_unit_test(other_model_rejected),
		cmocka_unit_test(same_seed_identical_file),
		cmocka_unit_test(interrupted_write_keeps_old),
		cmocka_unit_test(killed_writer_leaves_no_temp),
		cmocka_unit_test(cli_calibrate_and_info),
	};

	return cmocka_run_group_tests_name("calib", tests, setup_group, teardown_group);
}
