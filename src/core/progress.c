#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catscope/progress.h"

double
progress_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
progress_start(struct progress *p, const char *label, const char *unit, uint64_t total,
	       progress_fn callback, void *callback_ctx)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->unit = unit;
	p->total = total;
	p->start_time = progress_now();
	p->callback = callback;
	p->callback_ctx = callback_ctx;
	p->draw_on_stderr = callback == NULL && isatty(STDERR_FILENO);
}

static void
progress_format_duration(char *out, size_t size, double seconds)
{
	long s = (long)(seconds + 0.5);

	if (s >= 3600)
		snprintf(out, size, "%ldh%02ldm", s / 3600, (s / 60) % 60);
	else
		snprintf(out, size, "%ldm%02lds", s / 60, s % 60);
}

bool
progress_cancelled(const struct progress *p)
{
	return p != NULL && p->cancelled != NULL && p->cancelled(p->callback_ctx);
}

void
progress_update(struct progress *p, uint64_t done)
{
	double now = progress_now();
	double fraction;
	double elapsed;
	char eta[32];
	char bar[31];
	int filled;

	p->done = done;
	fraction = p->total ? (double)done / (double)p->total : 0.0;
	if (fraction > 1.0)
		fraction = 1.0;
	if (p->callback != NULL) {
		p->callback(p->callback_ctx, p->label, fraction);
		return;
	}
	/* Redrawing more than ten times a second only costs time. */
	if (!p->draw_on_stderr || (now - p->last_draw < 0.1 && done < p->total))
		return;
	p->last_draw = now;
	elapsed = now - p->start_time;
	filled = (int)(fraction * 30.0);
	memset(bar, '#', (size_t)filled);
	memset(bar + filled, '-', (size_t)(30 - filled));
	bar[30] = '\0';
	if (fraction > 0.0)
		progress_format_duration(eta, sizeof(eta), elapsed / fraction - elapsed);
	else
		snprintf(eta, sizeof(eta), "?");
	fprintf(stderr, "\r%s [%s] %3.0f%% %.0f %s/s ETA %s ", p->label, bar, fraction * 100.0,
		elapsed > 0.0 ? (double)done / elapsed : 0.0, p->unit, eta);
	fflush(stderr);
}

void
progress_finish(struct progress *p)
{
	if (p->draw_on_stderr && p->last_draw > 0.0) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	if (p->callback != NULL)
		p->callback(p->callback_ctx, p->label, 1.0);
}
