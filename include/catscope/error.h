/* Error reporting: a caller-owned buffer that a failing function fills with one line.
 *
 * Functions that can fail take a `struct error *` as their last argument and return
 * -1 (or NULL) after filling it. The message names the file or value involved and,
 * where one exists, what the user can do about it. It never ends in a newline. */
#ifndef CATSCOPE_ERROR_H
#define CATSCOPE_ERROR_H

#include <stddef.h>

#define ERROR_MESSAGE_MAX 1024

struct error {
	char message[ERROR_MESSAGE_MAX];
};

/* Formats the message into err (which may be NULL) and returns -1, so that a
 * failing function can end with `return error_set(err, ...)`. */
int error_set(struct error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Puts "prefix: " in front of the message already in err, for context such as a file name. */
void error_prefix(struct error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Adds text after the message already in err, such as advice that depends on the
 * caller. The message is cut at ERROR_MESSAGE_MAX. */
void error_append(struct error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clears err, so that an empty message means no error was reported. */
void error_clear(struct error *err);

#endif
