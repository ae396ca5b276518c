/* Progress of long jobs: a bar with rate and ETA on stderr when it is a terminal,
 * or a callback (the TUI's worker) that receives the fraction done. */
#ifndef CATSCOPE_PROGRESS_H
#define CATSCOPE_PROGRESS_H

#include <stdint.h>

typedef void (*progress_fn)(void *ctx, const char *label, double fraction);

struct progress {
	const char *label;
	const char *unit;    /* what is counted, such as "tok" */
	uint64_t total;
	uint64_t done;
	double start_time;
	double last_draw;
	int draw_on_stderr;  /* set when stderr is a terminal and no callback is given */
	progress_fn callback;
	void *callback_ctx;
};

/* Starts a job of total units. With callback NULL, draws on stderr if it is a terminal. */
void progress_start(struct progress *p, const char *label, const char *unit, uint64_t total,
		    progress_fn callback, void *callback_ctx);
void progress_update(struct progress *p, uint64_t done);
/* Erases the bar; the caller prints its own summary. */
void progress_finish(struct progress *p);

/* Seconds from a monotonic clock. */
double progress_now(void);

#endif
