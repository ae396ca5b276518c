/* Helpers shared by the test programs: where the real data lives, scratch files. */
#ifndef CATSCOPE_TESTUTIL_H
#define CATSCOPE_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

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

#endif
