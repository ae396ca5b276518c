/* The title line, the status line, and the log sink that routes engine messages
 * into the status line while curses owns the terminal. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

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

/* Cells the multibyte string s takes on screen; a byte that does not decode or a
 * character without a width counts as one cell. */
static int
text_cells(const char *s, size_t length)
{
	mbstate_t state;
	size_t offset = 0;
	int cells = 0;

	memset(&state, 0, sizeof(state));
	while (offset < length && s[offset] != '\0') {
		wchar_t ch;
		size_t n = mbrtowc(&ch, s + offset, length - offset, &state);
		int w;

		if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
			memset(&state, 0, sizeof(state));
			n = 1;
			w = 1;
		} else {
			w = wcwidth(ch);
			if (w < 0)
				w = 1;
		}
		cells += w;
		offset += n;
	}
	return cells;
}

/* The length in bytes of the longest start of s that takes at most cells cells and
 * ends on a character boundary. */
static size_t
text_prefix(const char *s, int cells)
{
	size_t length = strlen(s);
	size_t best = 0;

	for (size_t n = 1; n <= length; n++) {
		if (text_cells(s, n) > cells)
			break;
		if (n == length || (((unsigned char)s[n] & 0xc0) != 0x80))
			best = n;
	}
	return best;
}

/* Cuts line to cols cells. A cut line ends in "..." so that the user sees it was
 * cut, and the cut goes back to a space when one is near, to keep words whole. */
static void
status_ellipsize(char *line, int cols)
{
	size_t keep;

	if (text_cells(line, strlen(line)) <= cols)
		return;
	if (cols <= 3) {
		line[text_prefix(line, cols)] = '\0';
		return;
	}
	keep = text_prefix(line, cols - 3);
	for (size_t back = keep; back > 0 && keep - back < 16; back--) {
		if (line[back - 1] == ' ') {
			keep = back - 1;
			break;
		}
	}
	while (keep > 0 && line[keep - 1] == ' ')
		keep--;
	memcpy(line + keep, "...", 4);
}

/* Appends part to line after the separator " | " when line is not empty. */
static void
status_append(char *line, size_t size, const char *part)
{
	size_t used = strlen(line);

	if (part[0] == '\0' || used + 1 >= size)
		return;
	snprintf(line + used, size - used, "%s%s", used > 0 ? " | " : "", part);
}

/* Appends as many of the key hints (separated by two spaces) as fit in cols cells,
 * from the first, so that hints give way before the job status and the filter. */
static void
status_append_hints(char *line, size_t size, const char *hints, int cols)
{
	char fitted[TUI_STATUS_MAX] = "";
	const char *next = hints;

	while (*next != '\0') {
		const char *end = strstr(next, "  ");
		size_t length = end != NULL ? (size_t)(end - next) : strlen(next);
		char candidate[TUI_STATUS_MAX], trial[sizeof(candidate) + 4 * TUI_STATUS_MAX + 4];

		snprintf(candidate, sizeof(candidate), "%s%s%.*s", fitted, fitted[0] != '\0' ? "  " : "",
			 (int)length, next);
		snprintf(trial, sizeof(trial), "%s%s%s", line, line[0] != '\0' ? " | " : "", candidate);
		if (text_cells(trial, strlen(trial)) > cols)
			break;
		memcpy(fitted, candidate, sizeof(fitted));
		next += length;
		while (*next == ' ')
			next++;
	}
	status_append(line, size, fitted);
}

/* Appends the active filter, which stays on the status line until Esc clears it. The
 * hint "(Esc clears)" goes first when space is short. Beside a message (which fades
 * after a few seconds), the filter is left out while both do not fit. */
static void
status_append_filter(const struct tui *t, char *line, size_t size, const char *message)
{
	char candidates[2][TUI_STATUS_MAX];

	if (t->filter[0] == '\0')
		return;
	snprintf(candidates[0], sizeof(candidates[0]), "filter: %s (Esc clears)", t->filter);
	snprintf(candidates[1], sizeof(candidates[1]), "filter: %s", t->filter);
	for (int i = 0; i < 2; i++) {
		char trial[4 * TUI_STATUS_MAX];

		snprintf(trial, sizeof(trial), "%s%s%s%s%s", line, line[0] != '\0' ? " | " : "",
			 candidates[i], message[0] != '\0' ? " | " : "", message);
		if (text_cells(trial, strlen(trial)) <= t->cols) {
			status_append(line, size, candidates[i]);
			return;
		}
	}
	if (message[0] == '\0')
		status_append(line, size, candidates[1]);
}

void
tui_draw_status(struct tui *t)
{
	static const char spinner[] = "|/-\\";
	static const char hints[] =
		"? help  Enter detail  o overview  t transform  s sort  / filter  q quit";
	static const char calibration_hints[] =
		"no calibration: run catscope calibrate MODEL TEXT -o CACHE, then --calib CACHE  ? help";
	int pending = analysis_pending(t->a);
	int comparing = tui_compare_pending(t);
	char activity[2 * TUI_STATUS_MAX] = "", jobs[TUI_STATUS_MAX];
	char message[TUI_STATUS_MAX], prompt[TUI_STATUS_MAX], filter[TUI_STATUS_MAX];
	char line[4 * TUI_STATUS_MAX] = "";
	size_t used;
	bool error;
	int y = t->rows - 1;

	if (pending > 0)
		snprintf(activity, sizeof(activity), "%c computing %d site%s", spinner[t->frame % 4],
			 pending, pending == 1 ? "" : "s");
	else if (comparing > 0)
		snprintf(activity, sizeof(activity), "%c comparing (%d left)", spinner[t->frame % 4],
			 comparing);
	tui_jobs_activity(t, jobs, sizeof(jobs));
	used = strlen(activity);
	if (jobs[0] != '\0')
		snprintf(activity + used, sizeof(activity) - used, "%s%s", used > 0 ? " | " : "", jobs);

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

	if (tui_prompt_text(t, prompt, sizeof(prompt))) {
		/* An open question comes first and hides other messages until it is answered. */
		error = false;
		status_append(line, sizeof(line), prompt);
		status_append(line, sizeof(line), activity);
	} else if (t->editing_filter) {
		status_append(line, sizeof(line), activity);
		snprintf(filter, sizeof(filter), "filter: %s_  (Enter keeps, Esc clears)", t->filter);
		status_append(line, sizeof(line), filter);
	} else {
		status_append(line, sizeof(line), activity);
		status_append_filter(t, line, sizeof(line), message);
		if (message[0] != '\0')
			status_append(line, sizeof(line), message);
		else
			status_append_hints(line, sizeof(line),
					    t->a->stats_fn == NULL ? calibration_hints : hints, t->cols);
	}
	status_ellipsize(line, t->cols);

	attrset(tui_attr(t, error ? TUI_COLOR_ERROR : TUI_COLOR_STATUS));
	mvhline(y, 0, ' ', t->cols);
	mvaddnstr(y, 0, line, -1);
	attrset(A_NORMAL);
}
