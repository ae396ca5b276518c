/* Diagnostic messages for the user: warnings, notices and fatal errors.
 *
 * Everything below the TUI logs through here and never writes to the terminal
 * itself, because while curses owns the screen a stray write would corrupt it.
 * The TUI installs a sink that shows messages in its status line. */
#ifndef CATSCOPE_LOG_H
#define CATSCOPE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

typedef void (*log_sink_fn)(void *ctx, enum log_level level, const char *message);

/* Replaces the sink (NULL restores the default, which writes "catscope: ..." to stderr).
 * Returns the previous one so that it can be restored. */
void log_set_sink(log_sink_fn sink, void *ctx);
/* Runs before a fatal error is printed, so that the TUI can restore the terminal first. */
void log_set_fatal_hook(void (*hook)(void));
void log_set_verbose(int verbose);

void log_message(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_info(...) log_message(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_message(LOG_WARN, __VA_ARGS__)
#define log_debug(...) log_message(LOG_DEBUG, __VA_ARGS__)

/* Restores the terminal, prints the message and exits with status 1. */
void log_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
