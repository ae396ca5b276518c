/* The explorer: an ncurses view of an analysis, one row per site, with a detail
 * view, a model overview and keys that change transforms and the quantizer.
 *
 * tui_run takes over the terminal until the user quits and restores it on every
 * exit path, including a fatal error (through log_set_fatal_hook). The analysis
 * worker must be running or the table never fills; tui_run starts it if needed and
 * leaves it running. Only presentation lives here: every number comes from the
 * engine through the analysis. */
#ifndef CATSCOPE_TUI_H
#define CATSCOPE_TUI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catscope/analysis.h"
#include "catscope/error.h"
#include "catscope/session.h"

struct tui_options {
	bool no_color;           /* monochrome, also set by a non-empty NO_COLOR */
	bool ascii;              /* ASCII bars instead of Unicode blocks, also set by a
				  * locale whose codeset is not UTF-8 */
	const char *model_name;  /* shown in the title */
	const char *calib_name;  /* calibration cache shown in the title, or NULL */
	/* The session that records every change into its journal; F2 saves it and
	 * quitting with unsaved changes prompts first. With NULL, F2 does nothing. Borrowed;
	 * the caller frees it after tui_run. */
	struct session *session;
	/* Start at the session's selected site, sort, filter and view. */
	bool restore_ui;
	/* Held-out tokens for the p key (end-to-end perplexity), or NULL when --heldout
	 * was not given. Borrowed; the caller frees them after tui_run. */
	const int32_t *heldout_tokens;
	size_t n_heldout_tokens;
	int heldout_ctx;         /* window length in tokens */
	/* A warning to show on the status line at start (such as a replay forced past a
	 * fingerprint mismatch), or NULL. */
	const char *notice;
};

/* Runs the explorer on a until the user quits. Returns 0, or -1 with err set when
 * the terminal cannot be set up. */
/* Returns whether standard input and output are terminals, which the explorer needs. */
bool tui_terminal_available(void);

int tui_run(struct analysis *a, const struct tui_options *opt, struct error *err);

#endif
