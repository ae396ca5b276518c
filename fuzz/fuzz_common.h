/* Helpers for the libFuzzer targets: the readers take paths, so each input is put in
 * a file first. Fuzz-only code. */
#ifndef CATSCOPE_FUZZ_COMMON_H
#define CATSCOPE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>

/* Replaces the contents of an in-memory file with data and returns a path that open()
 * and mmap() accept ("/proc/self/fd/N"), in a static buffer. The file lives for the
 * whole run, so no input touches the disk. */
static const char *
fuzz_memory_file(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];

	if (fd < 0) {
		fd = memfd_create("catscope-fuzz", MFD_CLOEXEC);
		if (fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
		perror("writing the fuzz input");
		abort();
	}
	return path;
}

/* Writes data to dir/name, replacing the file. */
static void
fuzz_write_file(const char *dir, const char *name, const uint8_t *data, size_t size)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

static char fuzz_temp_path[4096];

/* Removes the temporary folder and every file in it (the targets write no subfolders). */
static void
fuzz_temp_dir_remove(void)
{
	DIR *d = opendir(fuzz_temp_path);
	struct dirent *e;
	char path[8192];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
			continue;
		snprintf(path, sizeof(path), "%s/%s", fuzz_temp_path, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(fuzz_temp_path);
}

/* Creates a temporary folder for targets whose reader takes a directory and returns its
 * path (static storage). The folder is removed when the run ends through exit. A
 * libFuzzer time limit may skip that, so a target that needs the folder only at
 * start-up calls fuzz_temp_dir_remove itself. */
static const char *
fuzz_temp_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(fuzz_temp_path, sizeof(fuzz_temp_path), "%s/catscope-fuzz-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(fuzz_temp_path) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(fuzz_temp_dir_remove);
	return fuzz_temp_path;
}

#endif
