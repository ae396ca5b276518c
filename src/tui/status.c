/* The title line, the status line, and the log sink that routes engine messages
 * into the status line while curses owns the terminal. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <curses.h>

#include "tui_impl.h"

/* Frames (of about 100 ms) a message stays before the key hints return. */
#define STATUS_FRAMES 40

void
tui_status_init(struct tui *t)
{
	pthread_mutex_init(&t->status_lock, NULL);
	t->status[0] = '\0';
}

static void
status_vset(struct tui *t, bool error, const char *fmt, va_list ap)
{
	char message[TUI_STATUS_MAX];

	vsnprintf(message, sizeof(message), fmt, ap);
	/* A message is one line: cut it at the first newline. */
	message[strcspn(message, "\n")] = '\0';
	pthread_mutex_lock(&t->status_lock);
	if (strcmp(message, t->status) == 0 && t->status_frames > 0) {
		/* A repeat (the engine warns once per evaluation) is counted, and does not
		 * keep the message on screen longer. */
		t->status_repeats++;
	} else {
		memcpy(t->status, message, sizeof(message));
		t->status_repeats = 1;
		t->status_frames = STATUS_FRAMES;
	}
	t->status_error = error;
	pthread_mutex_unlock(&t->status_lock);
}

void
tui_status_set(struct tui *t, bool error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	status_vset(t, error, fmt, ap);
	va_end(ap);
}

void
tui_draw_title(struct tui *t)
{
	char wbits[32], abits[32], perplexity[96], line[512];
	const struct quant_config *qc = &t->a->quant;
	bool no_calibration = t->a->stats_fn == NULL;

	/* Before the analysis lock, which the label takes itself. */
	tui_perplexity_label(t, perplexity, sizeof(perplexity));
	pthread_mutex_lock(&t->a->lock);
	quant_params_format(&qc->weight, wbits, sizeof(wbits));
	quant_params_format(&qc->act, abits, sizeof(abits));
	/* The perplexity goes before the calibration path, which can be long. */
	snprintf(line, sizeof(line), " catscope  %s  W %s  A %s  %s%s  %s%s%s",
		 t->opt->model_name != NULL ? t->opt->model_name : "",
		 wbits, abits, qc->rounding == QUANT_GPTQ ? "GPTQ" : "RTN", t->kv_bits ? "  KV 4" : "",
		 perplexity, perplexity[0] != '\0' ? "  " : "",
		 no_calibration ? "NO CALIBRATION (isotropic x)"
				: (t->opt->calib_name != NULL ? t->opt->calib_name : ""));
	pthread_mutex_unlock(&t->a->lock);

	attrset(tui_attr(t, TUI_COLOR_TITLE));
	mvhline(0, 0, ' ', t->cols);
	mvaddnstr(0, 0, line, t->cols);
	attrset(A_NORMAL);
}

void
tui_draw_status(struct tui *t)
{
	static const char spinner[] = "|/-\\";
	int pending = analysis_pending(t->a);
	int comparing = tui_compare_pending(t);
	char left[TUI_STATUS_MAX] = "";
	size_t used;
	char message[TUI_STATUS_MAX];
	bool error;
	int y = t->rows - 1;

	if (pending > 0)
		snprintf(left, sizeof(left), "%c computing %d site%s ", spinner[t->frame % 4], pending,
			 pending == 1 ? "" : "s");
	else if (comparing > 0)
		snprintf(left, sizeof(left), "%c comparing (%d left) ", spinner[t->frame % 4],
			 comparing);
	used = strlen(left);
	tui_jobs_activity(t, left + used, sizeof(left) - used);

	pthread_mutex_lock(&t->status_lock);
	if (t->status_frames > 0)
		t->status_frames--;
	if (t->status_frames == 0) {
		t->status[0] = '\0';
		t->status_repeats = 0;
	}
	if (t->status_repeats > 1)
		snprintf(message, sizeof(message), "%.200s (%u times)", t->status, t->status_repeats);
	else
		snprintf(message, sizeof(message), "%s", t->status);
	error = t->status_error && message[0] != '\0';
	pthread_mutex_unlock(&t->status_lock);
	/* An open question hides other messages until it is answered. */
	if (tui_prompt_text(t, message, sizeof(message)))
		error = false;

	if (message[0] == '\0') {
		if (t->editing_filter)
			snprintf(message, sizeof(message), "filter: %s_  (Enter keeps, Esc clears)",
				 t->filter);
		else if (t->a->stats_fn == NULL)
			snprintf(message, sizeof(message),
				 "no calibration: run catscope calibrate MODEL TEXT -o CACHE, then --calib CACHE  ? help");
		else
			snprintf(message, sizeof(message),
				 "? help  Enter detail  o overview  t transform  s sort  / filter  q quit");
	}

	attrset(tui_attr(t, error ? TUI_COLOR_ERROR : TUI_COLOR_STATUS));
	mvhline(y, 0, ' ', t->cols);
	mvaddnstr(y, 0, left, t->cols);
	addnstr(message, t->cols - (int)strlen(left) > 0 ? t->cols - (int)strlen(left) : 0);
	attrset(A_NORMAL);
}
