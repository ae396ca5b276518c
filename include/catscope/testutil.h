/* Helpers shared by the test programs: where the real data lives, scratch files. */
#ifndef CATSCOPE_TESTUTIL_H
#define CATSCOPE_TESTUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Returns the path of a file in the real-data folder ($CATSCOPE_DATA, by default
 * ../shared/data relative to the source tree) in a static buffer. */
static inline const char *
testutil_data_path(const char *name)
{
	static char path[4096];
	const char *dir = getenv("CATSCOPE_DATA");

	if (dir == NULL || dir[0] == '\0')
		dir = "../shared/data";
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

/* Creates a fresh scratch directory under $TMPDIR and returns its path (static buffer). */
static inline const char *
testutil_scratch_dir(void)
{
	static char path[4096];
	const char *tmp = getenv("TMPDIR");

	snprintf(path, sizeof(path), "%s/catscope-test-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(path) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return path;
}

/* nftw callback: gives the owner rwx on every directory, so that a directory that a
 * failed test left read-only can still be emptied. */
static inline int
testutil_make_removable(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_D || type == FTW_DNR)
		chmod(path, 0700);
	return 0;
}

/* nftw callback: removes one file, link or (already emptied) directory. */
static inline int
testutil_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) != 0) {
		fprintf(stderr, "removing %s failed: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Removes path and everything under it without following symbolic links, like rm -rf.
 * Returns 0 when nothing is left (a missing path counts as removed), else -1. */
static inline int
testutil_remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode))
		nftw(path, testutil_make_removable, 16, FTW_PHYS);
	return nftw(path, testutil_remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* cmocka setup: creates a scratch directory and stores a copy of its path in *state.
 * TESTUTIL_SCRATCH_TEST registers a test with it and testutil_scratch_teardown. */
static inline int
testutil_scratch_setup(void **state)
{
	const char *path = testutil_scratch_dir();

	*state = strdup(path);
	if (*state == NULL) {
		rmdir(path);
		return -1;
	}
	return 0;
}

/* cmocka teardown: removes the directory of testutil_scratch_setup with its contents.
 * cmocka (checked with 1.1.5) runs the teardown after a test passes, fails, crashes or skips. */
static inline int
testutil_scratch_teardown(void **state)
{
	int status = testutil_remove_tree(*state);

	free(*state);
	*state = NULL;
	return status;
}

/* A cmocka test entry that passes a fresh scratch directory in *state and removes it
 * with its contents when the test ends. */
#define TESTUTIL_SCRATCH_TEST(test) \
	cmocka_unit_test_setup_teardown(test, testutil_scratch_setup, testutil_scratch_teardown)

#endif
