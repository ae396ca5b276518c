#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"

/* The handler may only use async-signal-safe calls, so the paths live in static
 * storage rather than on the heap. */
#define ATOMIC_SLOTS 64

static char atomic_paths[ATOMIC_SLOTS][PATH_MAX];
static volatile sig_atomic_t atomic_is_directory[ATOMIC_SLOTS];
static volatile sig_atomic_t atomic_used[ATOMIC_SLOTS];
static volatile sig_atomic_t atomic_signal_seen;
/* Unlike atomic_signal_seen, kept after deferring ends, for the exit status. */
static volatile sig_atomic_t atomic_deferred_signal;
static volatile sig_atomic_t atomic_deferring;

static void
atomic_remove_registered(void)
{
	/* Files first, directories last, because a directory is only removable empty. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < ATOMIC_SLOTS; i++) {
			if (!atomic_used[i] || atomic_is_directory[i] != pass)
				continue;
			if (pass == 0)
				unlink(atomic_paths[i]);
			else
				rmdir(atomic_paths[i]);
		}
	}
}

static void
atomic_on_signal(int signo)
{
	if (atomic_deferring && !atomic_signal_seen) {
		atomic_signal_seen = 1;
		atomic_deferred_signal = signo;
		return;
	}
	atomic_remove_registered();
	signal(signo, SIG_DFL);
	raise(signo);
}

void
atomic_install_signal_cleanup(void)
{
	static int installed;
	struct sigaction action;

	if (installed)
		return;
	installed = 1;
	memset(&action, 0, sizeof(action));
	action.sa_handler = atomic_on_signal;
	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGHUP, &action, NULL);
	/* Past the file size limit (ulimit -f), SIGXFSZ would end the process before any
	 * cleanup. Ignored, the write fails with EFBIG instead, and the writer removes its
	 * temporary file as it does on a full disk. */
	signal(SIGXFSZ, SIG_IGN);
}

int
atomic_register(const char *path, int is_directory)
{
	if (strlen(path) >= PATH_MAX)
		return -1;
	for (int i = 0; i < ATOMIC_SLOTS; i++) {
		if (atomic_used[i])
			continue;
		memcpy(atomic_paths[i], path, strlen(path) + 1);
		atomic_is_directory[i] = is_directory;
		atomic_used[i] = 1;
		return i;
	}
	return -1;
}

void
atomic_forget(int slot)
{
	if (slot >= 0 && slot < ATOMIC_SLOTS)
		atomic_used[slot] = 0;
}

int
atomic_interrupted(void)
{
	return atomic_signal_seen;
}

int
atomic_deferred_signal_number(void)
{
	return atomic_deferred_signal;
}

void
atomic_defer_signals(int defer)
{
	atomic_deferring = defer;
	if (!defer)
		atomic_signal_seen = 0;
}

static char *
atomic_directory_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return alloc_strdup(".");
	if (slash == path)
		return alloc_strdup("/");
	return alloc_strndup(path, (size_t)(slash - path));
}

/* Returns the path to replace: path itself, or the file a symbolic link points to (so
 * that the link survives), or NULL with err set when the destination exists and is not
 * a regular file. Renaming over a device or a FIFO would swap it for a plain file,
 * which as root could replace /dev/null. */
static char *
atomic_destination(const char *path, struct error *err)
{
	struct stat st;
	char *resolved;

	if (path[0] == '\0') {
		error_set(err, "the output file name is empty");
		return NULL;
	}
	if (lstat(path, &st) != 0)
		return alloc_strdup(path);
	if (S_ISREG(st.st_mode))
		return alloc_strdup(path);
	if (S_ISLNK(st.st_mode) && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    (resolved = realpath(path, NULL)) != NULL) {
		char *copy = alloc_strdup(resolved);

		free(resolved);
		return copy;
	}
	error_set(err, "%s: exists and is not a regular file; choose another output name", path);
	return NULL;
}

/* The maximum length added to an output's name by the temporary names written next to
 * it: ".NAME.tmp.XXXXXX" for a file, "NAME.tmp-XXXXXX" and "NAME.old-XXXXXX" for an
 * export directory. */
#define ATOMIC_TEMP_NAME_EXTRA 12

int
atomic_check_directory(const char *path, struct error *err)
{
	const char *base = strrchr(path, '/');
	char *dir;
	struct stat st;
	long name_max;
	int rc = 0;

	if (path[0] == '\0')
		return error_set(err, "the output name is empty; give a file or directory name");
	if (path[strlen(path) - 1] == '/')
		return error_set(err, "%s: the output name ends with '/'; give the name without it",
				 path);
	base = base != NULL ? base + 1 : path;
	dir = atomic_directory_of(path);
	name_max = pathconf(dir, _PC_NAME_MAX);
	if (name_max <= 0)
		name_max = NAME_MAX;
	if (strlen(base) + ATOMIC_TEMP_NAME_EXTRA > (size_t)name_max)
		rc = error_set(err, "%s: the name is %zu bytes long, but at most %ld fit in this "
			       "directory beside the temporary name written next to it; choose a "
			       "shorter name", path, strlen(base), name_max - ATOMIC_TEMP_NAME_EXTRA);
	else if (stat(dir, &st) != 0)
		rc = error_set(err, "%s: cannot use the directory %s: %s; create it or choose another "
			       "output name", path, dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		rc = error_set(err, "%s: %s is not a directory; choose another output name", path, dir);
	else if (access(dir, W_OK | X_OK) != 0)
		rc = error_set(err, "%s: cannot create files in the directory %s: %s; choose another "
			       "output name", path, dir, strerror(errno));
	free(dir);
	return rc;
}

int
atomic_check_destination(const char *path, struct error *err)
{
	struct stat st;
	char *resolved;
	int rc;

	/* An existing destination that is not a regular file is the problem to report,
	 * even when its directory is not writable (as /dev is not for a user). */
	if (path[0] != '\0' && path[strlen(path) - 1] != '/' && lstat(path, &st) == 0) {
		resolved = atomic_destination(path, err);
		if (resolved == NULL)
			return -1;
		free(resolved);
	}
	if (atomic_check_directory(path, err) != 0)
		return -1;
	resolved = atomic_destination(path, err);
	if (resolved == NULL)
		return -1;
	/* A link may point into another directory, which is where the file is written. */
	rc = strcmp(resolved, path) == 0 ? 0 : atomic_check_directory(resolved, err);
	free(resolved);
	return rc;
}

int
atomic_file_open(struct atomic_file *file, const char *requested, struct error *err)
{
	char *path = atomic_destination(requested, err);
	const char *base;
	char *dir;
	size_t size;
	int fd;

	if (path == NULL) {
		memset(file, 0, sizeof(*file));
		file->slot = -1;
		return -1;
	}
	base = strrchr(path, '/');
	dir = atomic_directory_of(path);

	base = base ? base + 1 : path;
	memset(file, 0, sizeof(*file));
	file->slot = -1;
	size = strlen(dir) + strlen(base) + 32;
	file->temp_path = alloc_bytes(size);
	snprintf(file->temp_path, size, "%s/.%s.tmp.XXXXXX", dir, base);
	free(dir);

	fd = mkstemp(file->temp_path);
	if (fd < 0) {
		error_set(err, "%s: cannot create a temporary file in its directory: %s", path,
			  strerror(errno));
		free(file->temp_path);
		file->temp_path = NULL;
		free(path);
		return -1;
	}
	/* mkstemp creates 0600; a saved file should get the usual umask-based mode. */
	mode_t mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	file->slot = atomic_register(file->temp_path, 0);
	file->stream = fdopen(fd, "wb");
	if (file->stream == NULL) {
		int saved = errno;

		close(fd);
		atomic_file_abort(file);
		error_set(err, "%s: %s", path, strerror(saved));
		free(path);
		return -1;
	}
	file->path = path;
	return 0;
}

static int
atomic_fsync_directory(const char *path)
{
	char *dir = atomic_directory_of(path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	int rc = 0;

	free(dir);
	if (fd < 0)
		return -1;
	if (fsync(fd) != 0 && errno != EINVAL)
		rc = -1;
	close(fd);
	return rc;
}

int
atomic_file_commit(struct atomic_file *file, struct error *err)
{
	int failed = 0;
	int saved_errno = 0;

	if (fflush(file->stream) != 0 || ferror(file->stream)) {
		failed = 1;
		saved_errno = errno;
	} else if (fsync(fileno(file->stream)) != 0) {
		failed = 1;
		saved_errno = errno;
	}
	if (fclose(file->stream) != 0 && !failed) {
		failed = 1;
		saved_errno = errno;
	}
	file->stream = NULL;
	if (!failed && rename(file->temp_path, file->path) != 0) {
		failed = 1;
		saved_errno = errno;
	}
	if (failed) {
		error_set(err, "%s: writing failed, the previous file (if any) is unchanged: %s",
			  file->path, strerror(saved_errno));
		atomic_file_abort(file);
		return -1;
	}
	atomic_forget(file->slot);
	file->slot = -1;
	atomic_fsync_directory(file->path);
	free(file->temp_path);
	free(file->path);
	file->temp_path = NULL;
	file->path = NULL;
	return 0;
}

void
atomic_file_abort(struct atomic_file *file)
{
	if (file->stream != NULL) {
		fclose(file->stream);
		file->stream = NULL;
	}
	if (file->temp_path != NULL) {
		unlink(file->temp_path);
		free(file->temp_path);
		file->temp_path = NULL;
	}
	atomic_forget(file->slot);
	file->slot = -1;
	free(file->path);
	file->path = NULL;
}

int
atomic_write_all(const char *path, const void *data, size_t size, struct error *err)
{
	struct atomic_file file;

	if (atomic_file_open(&file, path, err) != 0)
		return -1;
	if (size > 0 && fwrite(data, 1, size, file.stream) != size) {
		int saved_errno = errno;

		atomic_file_abort(&file);
		return error_set(err, "%s: writing failed, the previous file (if any) is unchanged: %s",
				 path, strerror(saved_errno));
	}
	return atomic_file_commit(&file, err);
}
