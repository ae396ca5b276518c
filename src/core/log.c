#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "catscope/log.h"

static log_sink_fn log_sink;
static void *log_sink_ctx;
static void (*log_fatal_hook)(void);
static int log_verbose;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_set_sink(log_sink_fn sink, void *ctx)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_sink_ctx = ctx;
	pthread_mutex_unlock(&log_lock);
}

void
log_set_fatal_hook(void (*hook)(void))
{
	log_fatal_hook = hook;
}

void
log_set_verbose(int verbose)
{
	log_verbose = verbose;
}

void
log_message(enum log_level level, const char *fmt, ...)
{
	char message[1024];
	va_list ap;

	if (level == LOG_DEBUG && !log_verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&log_lock);
	if (log_sink != NULL) {
		log_sink(log_sink_ctx, level, message);
	} else {
		const char *tag = "";

		if (level == LOG_WARN)
			tag = "warning: ";
		else if (level == LOG_ERROR)
			tag = "error: ";
		fprintf(stderr, "catscope: %s%s\n", tag, message);
	}
	pthread_mutex_unlock(&log_lock);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	if (log_fatal_hook != NULL)
		log_fatal_hook();
	fputs("catscope: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}
