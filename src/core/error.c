#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "catscope/error.h"
#include "catscope/utf8.h"

/* Replaces control characters and bytes that are not UTF-8 with '?'. Messages quote
 * names from untrusted files, and an escape sequence in a tensor name must not reach
 * the user's terminal. */
static void
error_sanitize(char *message)
{
	size_t length = strlen(message);
	size_t i = 0;

	while (i < length) {
		unsigned char c = (unsigned char)message[i];
		size_t n = utf8_char_length(message + i, length - i);

		if (n == 0 || c < 0x20 || c == 0x7f) {
			message[i++] = '?';
			continue;
		}
		/* U+0080..U+009F are C1 controls, which some terminals obey. */
		if (n == 2 && c == 0xc2 && (unsigned char)message[i + 1] < 0xa0) {
			message[i] = '?';
			message[i + 1] = '?';
		}
		i += n;
	}
}

int
error_set(struct error *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	error_sanitize(err->message);
	return -1;
}

void
error_prefix(struct error *err, const char *fmt, ...)
{
	char prefix[ERROR_MESSAGE_MAX];
	char joined[2 * ERROR_MESSAGE_MAX + 2];
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof(joined), "%s: %s", prefix, err->message);
	/* A message longer than the buffer keeps its start, which names the file. */
	joined[sizeof(err->message) - 1] = '\0';
	memcpy(err->message, joined, sizeof(err->message));
	error_sanitize(err->message);
}

void
error_append(struct error *err, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (err == NULL)
		return;
	used = strlen(err->message);
	va_start(ap, fmt);
	vsnprintf(err->message + used, sizeof(err->message) - used, fmt, ap);
	va_end(ap);
	error_sanitize(err->message);
}

void
error_clear(struct error *err)
{
	if (err != NULL)
		err->message[0] = '\0';
}
