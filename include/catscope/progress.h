/* Progress of long jobs: a bar with rate and ETA on stderr when it is a terminal,
 * or a callback (the TUI's worker) that receives the fraction done. */
#ifndef CATSCOPE_PROGRESS_H
#define CATSCOPE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*progress_fn)(void *ctx, const char *label, double fraction);
/* Returns true when the job should stop; receives the callback context. */
typedef bool (*progress_cancel_fn)(void *ctx);

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
	/* Polled by jobs that can stop early (eval_perplexity, between windows), or NULL.
	 * progress_start clears it, so set it afterwards. */
	progress_cancel_fn cancelled;
};

/* Starts a job of total units. With callback NULL, draws on stderr if it is a terminal. */
void progress_start(struct progress *p, const char *label, const char *unit, uint64_t total,
		    progress_fn callback, void *callback_ctx);
void progress_update(struct progress *p, uint64_t done);
/* Returns whether p has a cancel check that requests a stop (false for p NULL). */
bool progress_cancelled(const struct progress *p);
/* Erases the bar; the caller prints its own summary. */
void progress_finish(struct progress *p);

/* Seconds from a monotonic clock. */
double progress_now(void);

#endif
