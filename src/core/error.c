#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "catscope/error.h"

int
error_set(struct error *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
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
}

void
error_clear(struct error *err)
{
	if (err != NULL)
		err->message[0] = '\0';
}
