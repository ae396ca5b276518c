/* Atomic replacement of files and directories.
 *
 * A new file is written under a temporary name in the destination's directory,
 * flushed with fsync and renamed over the destination, so a reader sees either the
 * old file or the complete new one. Temporary names are registered so that SIGINT,
 * SIGTERM and SIGHUP remove them before the program exits: an interrupted write
 * leaves no trace and the old file untouched. */
#ifndef CATSCOPE_ATOMICFILE_H
#define CATSCOPE_ATOMICFILE_H

#include <stdio.h>

#include "catscope/error.h"

struct atomic_file {
	char *path;      /* the destination */
	char *temp_path; /* where the data goes until commit */
	FILE *stream;
	int slot;        /* registration for cleanup on a signal, -1 if none */
};

/* Installs the signal handlers that remove registered temporary files, and ignores
 * SIGXFSZ so that a write past the file size limit fails instead. Idempotent. */
void atomic_install_signal_cleanup(void);

/* Checks, without writing anything, that a new entry can be created at path. The name
 * must be non-empty, must not end in '/' and must leave room for the temporary names
 * derived from it, and its directory must exist and accept new files. A long job calls
 * this to reject a bad output name before it starts. */
int atomic_check_directory(const char *path, struct error *err);
/* Checks, without writing anything, that atomic_file_open and commit can replace
 * path: atomic_check_directory holds, and path does not exist or is a regular file
 * or a symbolic link to one (then for the linked file's directory). A later failure
 * (a full disk, a directory changed meanwhile) is still possible. */
int atomic_check_destination(const char *path, struct error *err);

/* Creates a temporary file next to path and opens it for writing. */
int atomic_file_open(struct atomic_file *file, const char *path, struct error *err);
/* Flushes, fsyncs and renames the temporary file over the destination, then fsyncs
 * the directory. On failure the temporary file is removed and the destination is
 * left as it was. */
int atomic_file_commit(struct atomic_file *file, struct error *err);
/* Removes the temporary file; the destination is untouched. Safe after commit. */
void atomic_file_abort(struct atomic_file *file);

/* Writes size bytes to path atomically. */
int atomic_write_all(const char *path, const void *data, size_t size, struct error *err);

/* Registers a path (file or empty directory) to be removed if a signal ends the
 * program. Returns a slot for atomic_forget, or -1 if the table is full. */
int atomic_register(const char *path, int is_directory);
void atomic_forget(int slot);

/* Returns nonzero once SIGINT, SIGTERM or SIGHUP has been received while the
 * handlers were deferring (see atomic_defer_signals). */
int atomic_interrupted(void);
/* Returns the signal that atomic_interrupted reported, or 0 if none arrived while
 * deferring. It stays set after atomic_defer_signals(0), so that the program can
 * exit with 128 plus the signal number once the job has cleaned up. */
int atomic_deferred_signal_number(void);
/* With defer set, a signal only sets the flag that atomic_interrupted reads, so that a
 * long job can stop at a safe point and clean up itself. */
void atomic_defer_signals(int defer);

#endif
