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
#include <sys/wait.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/calib.h"
#include "catscope/calib_cache.h"
#include "catscope/model_load.h"
#include "catscope/testutil.h"
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
		cmocka_unit_test(other_model_rejected),
		cmocka_unit_test(same_seed_identical_file),
		cmocka_unit_test(interrupted_write_keeps_old),
		cmocka_unit_test(killed_writer_leaves_no_temp),
		cmocka_unit_test(cli_calibrate_and_info),
	};

	return cmocka_run_group_tests_name("calib", tests, setup_group, teardown_group);
}
