/* export_write: the quantized model directory, written under a temporary name and
 * renamed into place. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "export_impl.h"

void
export_options_default(struct export_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->dtype = SAFETENSORS_F16;
	opt->shard_size = EXPORT_DEFAULT_SHARD_SIZE;
	opt->fail_after = -1;
	opt->interrupt_after = -1;
}

/* Removes dir and the plain files in it (an export has no subdirectories). A symbolic
 * link is removed itself, never followed, so nothing outside dir is touched. */
static void
export_remove_tree(const char *dir)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char path[2 * PATH_MAX];

	if (lstat(dir, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(dir);
		return;
	}
	d = opendir(dir);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/* Counts the files in dir and their total size. */
static void
export_measure_tree(const char *dir, struct export_summary *summary)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[2 * PATH_MAX];
	struct stat st;

	summary->bytes = 0;
	summary->n_files = 0;
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			summary->bytes += (uint64_t)st.st_size;
			summary->n_files++;
		}
	}
	closedir(d);
}

static int
export_fsync_path(const char *path, int flags)
{
	int fd = open(path, flags);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
export_stop_requested(void)
{
	return atomic_interrupted();
}

/* Writes the config as the last file, so that a directory without it is never taken
 * for an export. */
static int
export_write_config(const struct analysis *a, const struct export_options *opt,
		    const char *tmp, const char *tokenizer_file, uint64_t *bytes,
		    struct error *err)
{
	json_t *config = export_build_config(a, opt, tokenizer_file);
	char path[2 * PATH_MAX];
	struct stat st;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", tmp, EXPORT_CONFIG_FILE);
	rc = json_dump_file(config, path, JSON_INDENT(2)) == 0 &&
	     export_fsync_path(path, O_RDONLY) == 0 ? 0 : error_set(err, "%s: writing failed", path);
	json_decref(config);
	if (rc == 0 && stat(path, &st) == 0)
		*bytes += (uint64_t)st.st_size;
	return rc;
}

/* Puts tmp at dir. An existing dir is exchanged with tmp in one step where the kernel
 * supports it, or else renamed away first. The old copy is removed only once the new
 * one is in place. */
static int
export_commit(const char *tmp, const char *dir, bool exists, struct error *err)
{
	char old[PATH_MAX];

	if (!exists) {
		if (rename(tmp, dir) != 0)
			return error_set(err, "%s: cannot rename the finished export into place: %s", dir,
					 strerror(errno));
		return 0;
	}
#ifdef RENAME_EXCHANGE
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
		export_remove_tree(tmp);
		return 0;
	}
#endif
	snprintf(old, sizeof(old), "%s.old-XXXXXX", dir);
	if (mkdtemp(old) == NULL || rmdir(old) != 0 || rename(dir, old) != 0)
		return error_set(err, "%s: cannot move the existing export aside: %s", dir,
				 strerror(errno));
	if (rename(tmp, dir) != 0) {
		int saved = errno;

		rename(old, dir);
		return error_set(err, "%s: cannot rename the finished export into place: %s", dir,
				 strerror(saved));
	}
	export_remove_tree(old);
	return 0;
}

static double
export_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Everything that goes into the temporary directory. */
static int
export_fill(struct analysis *a, const struct export_options *opt, const char *tmp,
	    struct export_summary *summary, struct error *err)
{
	struct simulation *sim;
	struct safetensors_writer *w;
	char **files = NULL;
	int n_files = 0, rc;
	const char *tokenizer_file = NULL;

	/* NOTE: the simulation keeps a float32 copy of every linear layer and the writer
	 * keeps all packed tensors until they are written, so an export needs about
	 * 1.1 times the float32 size of the blocks in memory. */
	sim = simulation_new(a, err);
	if (sim == NULL)
		return -1;
	if (atomic_interrupted()) {
		simulation_free(sim);
		return error_set(err, "interrupted");
	}
	w = safetensors_writer_new();
	rc = export_add_tensors(w, sim, &a->quant, opt, &summary->inexact_groups, err);
	simulation_free(sim);
	if (rc == 0)
		rc = safetensors_writer_write(w, tmp, opt->shard_size, export_stop_requested, &files,
					      &n_files, &summary->bytes, err);
	safetensors_writer_free(w);
	summary->n_shards = n_files > 1 ? n_files - 1 : n_files;
	if (rc == 0)
		rc = export_write_tokenizer(a->model, tmp, &files, &n_files, &tokenizer_file, err);
	if (rc == 0 && atomic_interrupted())
		rc = error_set(err, "interrupted");
	if (rc == 0)
		rc = export_write_config(a, opt, tmp, tokenizer_file, &summary->bytes, err);
	for (int i = 0; i < n_files; i++)
		free(files[i]);
	free(files);
	if (rc == 0)
		export_measure_tree(tmp, summary);
	if (rc == 0 && export_fsync_path(tmp, O_RDONLY | O_DIRECTORY) != 0)
		rc = error_set(err, "%s: fsync failed: %s", tmp, strerror(errno));
	return rc;
}

int
export_write(struct analysis *a, const struct export_options *opt, const char *dir,
	     struct export_summary *summary, struct error *err)
{
	char tmp[PATH_MAX];
	struct stat st;
	bool exists = lstat(dir, &st) == 0;
	double start = export_now();
	int slot, rc;
	const struct quant_params *wp = &a->quant.weight;
	size_t length = strlen(dir);

	memset(summary, 0, sizeof(*summary));
	if (length == 0 || dir[length - 1] == '/')
		return error_set(err, "'%s': name the export directory without a trailing slash", dir);
	/* Replacing goes by renaming, which would move the link and then empty the
	 * directory it points to; the caller must name the directory itself. */
	if (exists && S_ISLNK(st.st_mode))
		return error_set(err, "%s: is a symbolic link; give the directory it points to instead",
				 dir);
	if (exists && !opt->force)
		return error_set(err, "%s: already exists; pass --force to replace it", dir);
	if (exists && !export_is_directory(dir))
		return error_set(err, "%s: exists and is not a catscope export; remove it first", dir);
	if (wp->bits != 2 && wp->bits != 4 && wp->bits != 8)
		return error_set(err, "weights of %d bits cannot be packed into int32; export supports 2, "
				      "4 and 8 bits", wp->bits);
	if (opt->dtype != SAFETENSORS_F16 && opt->dtype != SAFETENSORS_BF16 &&
	    opt->dtype != SAFETENSORS_F32)
		return error_set(err, "the unquantized tensors must be F16, BF16 or F32");
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dir) >= (int)sizeof(tmp) || mkdtemp(tmp) == NULL)
		return error_set(err, "%s: cannot create a temporary directory next to it: %s", dir,
				 strerror(errno));

	/* Signals only set a flag from here on; the export stops at the next tensor and
	 * removes what it wrote. The registration covers a second signal, which ends the
	 * program at once: it removes the directory only if it is still empty. */
	/* mkdtemp creates the directory 0700; an export gets the usual umask. */
	mode_t mask = umask(0);

	umask(mask);
	chmod(tmp, 0777 & ~mask);
	slot = atomic_register(tmp, 1);
	atomic_defer_signals(1);
	rc = export_fill(a, opt, tmp, summary, err);
	if (rc == 0 && atomic_interrupted())
		rc = error_set(err, "interrupted");
	if (rc == 0)
		rc = export_commit(tmp, dir, exists, err);
	if (rc != 0)
		export_remove_tree(tmp);
	atomic_forget(slot);
	atomic_defer_signals(0);
	summary->seconds = export_now() - start;
	return rc;
}
