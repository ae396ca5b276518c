/* Tests of the core part: error formatting, atomic file replacement and parallel
 * loops. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "catscope/atomicfile.h"
#include "catscope/error.h"
#include "catscope/number_format.h"
#include "catscope/parallel.h"
#include "catscope/testutil.h"

/* What each part of a parallel_for saw, and which threads ran parts. */
struct part_log {
	int64_t n;
	int64_t begin[PARALLEL_PARTS + 8], end[PARALLEL_PARTS + 8];
	int calls[PARALLEL_PARTS + 8];
	unsigned char *visits;
	pthread_t thread[PARALLEL_PARTS + 8];
};

static void
log_part(void *ctx, int part, int64_t begin, int64_t end)
{
	struct part_log *log = ctx;

	log->begin[part] = begin;
	log->end[part] = end;
	log->calls[part]++;
	log->thread[part] = pthread_self();
	for (int64_t i = begin; i < end; i++)
		log->visits[i]++;
}

static void
run_logged(struct part_log *log, int64_t n, int parts, int threads)
{
	memset(log, 0, sizeof(*log));
	log->n = n;
	log->visits = calloc(n > 0 ? n : 1, 1);
	assert_non_null(log->visits);
	parallel_set_threads(threads);
	parallel_for(n, parts, log_part, log);
	parallel_set_threads(0);
}

static void
parallel_for_splits_by_size(void **state)
{
	static const int64_t lengths[] = { 1, 5, 16, 17, 1000, 4099 };
	static const int thread_counts[] = { 1, 2, 3, 7 };

	(void)state;
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		int64_t n = lengths[i];
		struct part_log one;
		int parts = n < PARALLEL_PARTS ? (int)n : PARALLEL_PARTS;

		run_logged(&one, n, PARALLEL_PARTS, 1);
		for (size_t t = 0; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
			struct part_log many;
			int64_t covered = 0;

			run_logged(&many, n, PARALLEL_PARTS, thread_counts[t]);
			for (int64_t k = 0; k < n; k++)
				assert_int_equal(many.visits[k], 1);
			for (int p = 0; p < parts; p++) {
				assert_int_equal(many.calls[p], 1);
				assert_int_equal(many.begin[p], one.begin[p]);
				assert_int_equal(many.end[p], one.end[p]);
				assert_int_equal(many.begin[p], covered);
				covered = many.end[p];
			}
			assert_int_equal(covered, n);
			/* Never more parts than indices. */
			assert_int_equal(many.calls[parts], 0);
			free(many.visits);
		}
		free(one.visits);
	}
}

static void
parallel_for_uses_threads(void **state)
{
	struct part_log log;
	bool other = false;

	(void)state;
	run_logged(&log, 64, 4, 4);
	for (int p = 0; p < 4; p++)
		other = other || !pthread_equal(log.thread[p], pthread_self());
	assert_true(other);
	free(log.visits);
	run_logged(&log, 64, 4, 1);
	for (int p = 0; p < 4; p++)
		assert_true(pthread_equal(log.thread[p], pthread_self()));
	free(log.visits);
	run_logged(&log, 0, 4, 4);
	assert_int_equal(log.calls[0], 0);
	free(log.visits);
}

static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static void
read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void
error_prefix_keeps_message(void **state)
{
	struct error err;

	assert_int_equal(error_set(&err, "bad value %d", 7), -1);
	error_prefix(&err, "%s", "model.gguf");
	assert_string_equal(err.message, "model.gguf: bad value 7");
}

static void
error_append_adds_advice(void **state)
{
	struct error err;
	char long_text[2 * ERROR_MESSAGE_MAX];

	error_set(&err, "fingerprints differ");
	error_append(&err, "; use %s to replay anyway", "--force");
	assert_string_equal(err.message, "fingerprints differ; use --force to replay anyway");

	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	error_append(&err, "%s", long_text);
	assert_int_equal(strlen(err.message), ERROR_MESSAGE_MAX - 1);
	assert_memory_equal(err.message, "fingerprints differ", strlen("fingerprints differ"));
}

static void
negative_zero_prints_unsigned(void **state)
{
	static const struct {
		double value;
		int precision;
		const char *expected;
	} cases[] = {
		{ -0.0, 1, "0.0" },       { -0.04, 1, "0.0" },     { -0.004, 2, "0.00" },
		{ -0.0049, 2, "0.00" },   { -0.006, 2, "-0.01" },  { -0.05001, 1, "-0.1" },
		{ 0.04, 1, "0.0" },       { -12.5, 1, "-12.5" },   { -1e30, 0, "-1000000000000000019884624838656" },
	};
	char text[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double v = number_drop_negative_zero(cases[i].value, cases[i].precision);

		snprintf(text, sizeof(text), "%.*f", cases[i].precision, v);
		assert_string_equal(text, cases[i].expected);
	}
	assert_true(isnan(number_drop_negative_zero(NAN, 2)));
	assert_true(isinf(number_drop_negative_zero(-INFINITY, 2)));
}

static void
atomic_write_replaces_file(void **state)
{
	const char *dir = *state;
	char path[4200];
	char buf[64];
	struct error err;

	snprintf(path, sizeof(path), "%s/out.txt", dir);
	assert_int_equal(atomic_write_all(path, "old", 3, &err), 0);
	assert_int_equal(atomic_write_all(path, "new data", 8, &err), 0);
	read_file(path, buf, sizeof(buf));
	assert_string_equal(buf, "new data");
	assert_int_equal(count_entries(dir), 1);
}

static void
atomic_abort_keeps_old_file(void **state)
{
	const char *dir = *state;
	char path[4200];
	char buf[64];
	struct atomic_file file;
	struct error err;

	snprintf(path, sizeof(path), "%s/out.txt", dir);
	assert_int_equal(atomic_write_all(path, "old", 3, &err), 0);
	assert_int_equal(atomic_file_open(&file, path, &err), 0);
	fputs("half written", file.stream);
	assert_int_equal(count_entries(dir), 2);
	atomic_file_abort(&file);
	read_file(path, buf, sizeof(buf));
	assert_string_equal(buf, "old");
	assert_int_equal(count_entries(dir), 1);
}

static void
atomic_write_missing_directory(void **state)
{
	struct error err;

	error_clear(&err);
	assert_int_equal(atomic_write_all("/nonexistent-dir-catscope/x", "a", 1, &err), -1);
	assert_non_null(strstr(err.message, "/nonexistent-dir-catscope/x"));
}

static void
atomic_write_read_only_directory(void **state)
{
	const char *dir = *state;
	char path[4200];
	char buf[64];
	struct error err;

	if (geteuid() == 0)
		skip(); /* root ignores directory permissions */
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	assert_int_equal(atomic_write_all(path, "old", 3, &err), 0);
	chmod(dir, 0555);
	assert_int_equal(atomic_write_all(path, "new", 3, &err), -1);
	chmod(dir, 0755);
	read_file(path, buf, sizeof(buf));
	assert_string_equal(buf, "old");
}

static void
atomic_write_file_size_limit(void **state)
{
	const char *dir = *state;
	char path[4200];
	char buf[64];
	char big[1 << 16];
	struct error err;
	pid_t pid;
	int status;

	/* A file size limit makes write fail with EFBIG, as a full disk fails with
	 * ENOSPC; the child sets it so that the test process keeps its own limits. */
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	assert_int_equal(atomic_write_all(path, "old", 3, &err), 0);
	memset(big, 'x', sizeof(big));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit limit = { 4096, 4096 };

		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &limit);
		_exit(atomic_write_all(path, big, sizeof(big), &err) == -1 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	read_file(path, buf, sizeof(buf));
	assert_string_equal(buf, "old");
	assert_int_equal(count_entries(dir), 1);
}

static void
error_message_drops_control_bytes(void **state)
{
	struct error err;

	error_set(&err, "tensor '%s' is bad", "a\x1b[31mred\x07\xff\xc2\x9b" "done");
	assert_string_equal(err.message, "tensor 'a?[31mred????done' is bad");
	error_set(&err, "%s", "caf\xc3\xa9 \xe2\x96\x81t");
	assert_string_equal(err.message, "caf\xc3\xa9 \xe2\x96\x81t");
}

static void
atomic_write_special_destinations(void **state)
{
	const char *dir = *state;
	char fifo[4200], target[4200], link[4200];
	char buf[64];
	struct stat st;
	struct error err;

	/* A FIFO (like a device) is refused and left as it is, never replaced by a file. */
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(atomic_write_all(fifo, "data", 4, &err), -1);
	assert_non_null(strstr(err.message, "not a regular file"));
	assert_int_equal(lstat(fifo, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));

	/* A symbolic link to a file: the file gets the new contents and the link stays. */
	snprintf(target, sizeof(target), "%s/target", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(atomic_write_all(target, "old", 3, &err), 0);
	assert_int_equal(symlink("target", link), 0);
	assert_int_equal(atomic_write_all(link, "new", 3, &err), 0);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	read_file(target, buf, sizeof(buf));
	assert_string_equal(buf, "new");
	assert_int_equal(count_entries(dir), 3);
}

static void
atomic_check_rejects_bad_destinations(void **state)
{
	const char *dir = *state;
	char path[4200], fifo[4200], missing[4200], trailing[4200], under_file[4200];
	char target[4200], link[4200];
	struct error err;

	assert_int_equal(atomic_check_destination("", &err), -1);
	assert_non_null(strstr(err.message, "empty"));
	assert_int_equal(atomic_check_destination("/dev/null", &err), -1);
	assert_non_null(strstr(err.message, "not a regular file"));
	assert_int_equal(atomic_check_destination(dir, &err), -1);
	assert_non_null(strstr(err.message, "not a regular file"));

	snprintf(trailing, sizeof(trailing), "%s/out/", dir);
	assert_int_equal(atomic_check_destination(trailing, &err), -1);
	assert_non_null(strstr(err.message, "ends with '/'"));
	snprintf(missing, sizeof(missing), "%s/no-such-dir/out", dir);
	assert_int_equal(atomic_check_destination(missing, &err), -1);
	assert_non_null(strstr(err.message, "No such file or directory"));

	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(atomic_check_destination(fifo, &err), -1);
	assert_non_null(strstr(err.message, "not a regular file"));

	/* A regular file, a new name and a link to a file are fine, and nothing is created. */
	snprintf(path, sizeof(path), "%s/new", dir);
	assert_int_equal(atomic_check_destination(path, &err), 0);
	snprintf(target, sizeof(target), "%s/target", dir);
	assert_int_equal(atomic_write_all(target, "old", 3, &err), 0);
	assert_int_equal(atomic_check_destination(target, &err), 0);
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink("target", link), 0);
	assert_int_equal(atomic_check_destination(link, &err), 0);
	snprintf(under_file, sizeof(under_file), "%s/target/out", dir);
	assert_int_equal(atomic_check_destination(under_file, &err), -1);
	assert_non_null(strstr(err.message, "is not a directory"));
	assert_int_equal(count_entries(dir), 3);
}

static void
atomic_check_read_only_directory(void **state)
{
	const char *dir = *state;
	char path[4200];
	struct error err;

	if (geteuid() == 0)
		skip(); /* root ignores directory permissions */
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	chmod(dir, 0555);
	assert_int_equal(atomic_check_destination(path, &err), -1);
	assert_non_null(strstr(err.message, "cannot create files"));
	chmod(dir, 0755);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(error_prefix_keeps_message),
		cmocka_unit_test(error_append_adds_advice),
		cmocka_unit_test(negative_zero_prints_unsigned),
		cmocka_unit_test(error_message_drops_control_bytes),
		TESTUTIL_SCRATCH_TEST(atomic_write_replaces_file),
		TESTUTIL_SCRATCH_TEST(atomic_abort_keeps_old_file),
		cmocka_unit_test(atomic_write_missing_directory),
		TESTUTIL_SCRATCH_TEST(atomic_write_read_only_directory),
		TESTUTIL_SCRATCH_TEST(atomic_write_file_size_limit),
		TESTUTIL_SCRATCH_TEST(atomic_write_special_destinations),
		TESTUTIL_SCRATCH_TEST(atomic_check_rejects_bad_destinations),
		TESTUTIL_SCRATCH_TEST(atomic_check_read_only_directory),
		cmocka_unit_test(parallel_for_splits_by_size),
		cmocka_unit_test(parallel_for_uses_threads),
	};

	return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
