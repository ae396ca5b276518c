/* The explorer's entry point and main loop: poll keys with a short timeout, take a
 * snapshot of the analysis, draw the current view. */
#include "config.h"

#include <unistd.h>

#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "catscope/alloc.h"
#include "catscope/log.h"
#include "tui_impl.h"

static void
tui_log_sink(void *ctx, enum log_level level, const char *message)
{
	struct tui *t = ctx;

	if (level == LOG_DEBUG)
		return;
	tui_status_set(t, level >= LOG_WARN, "%s", message);
}

static void
tui_draw(struct tui *t)
{
	erase();
	tui_draw_title(t);
	switch (t->view) {
	case TUI_VIEW_TABLE:
		tui_table_draw(t);
		break;
	case TUI_VIEW_DETAIL:
		tui_detail_draw(t);
		break;
	case TUI_VIEW_OVERVIEW:
		tui_overview_draw(t);
		break;
	case TUI_VIEW_HELP:
		tui_help_draw(t);
		break;
	}
	tui_draw_status(t);
	refresh();
}

bool
tui_terminal_available(void)
{
	return isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
}

/* Reads one key or character and acts on it. Returns false if none was typed. It
 * uses get_wch because getch splits a UTF-8 character into separate bytes. */
static bool
tui_take_input(struct tui *t)
{
	wint_t input;
	int rc = get_wch(&input);

	if (rc == ERR)
		return false;
	if (rc == KEY_CODE_YES || input < 0x80)
		tui_handle_key(t, (int)input);
	else
		tui_handle_text(t, (wchar_t)input);
	return true;
}

int
tui_run(struct analysis *a, const struct tui_options *opt, struct error *err)
{
	struct tui *t;
	int rc = 0;

	/* Without a terminal curses would draw into a file or a pipe and wait for keys that
	 * never come. */
	if (!tui_terminal_available())
		return error_set(err, "the explorer needs a terminal on standard input and output; "
				 "use 'catscope report' or 'catscope replay --batch' in scripts");
	t = alloc_zeroed(1, sizeof(*t));
	t->a = a;
	t->opt = opt;
	t->table = alloc_zeroed((size_t)a->n_sites, sizeof(*t->table));
	t->order = alloc_zeroed((size_t)a->n_sites, sizeof(*t->order));
	t->sort_column = COL_SITE;
	tui_status_init(t);
	tui_jobs_init(t);

	if (tui_screen_start(t, err) != 0) {
		rc = -1;
		goto out;
	}
	log_set_sink(tui_log_sink, t);
	analysis_worker_start(a);
	if (tui_compare_start(t) != 0)
		tui_status_set(t, true, "cannot start the comparison thread; vs none stays empty");
	/* After the comparison thread exists: the table snapshot reads its references. */
	if (opt->session != NULL && opt->restore_ui)
		tui_restore_ui(t);
	if (opt->notice != NULL)
		tui_status_set(t, true, "%s", opt->notice);

	while (!t->quit) {
		t->frame++;
		tui_jobs_poll(t);
		tui_table_refresh(t);
		tui_draw(t);
		if (tui_take_input(t)) {
			/* Take every key already typed before drawing again, so that a held
			 * key or a burst from a script never lags behind. */
			timeout(0);
			while (!t->quit && tui_take_input(t))
				tui_table_refresh(t);
			timeout(100);
		}
	}

	log_set_sink(NULL, NULL);
	tui_screen_stop();
	/* NOTE: the engine has no cancellation point, so quitting waits for the site
	 * evaluation in progress here to finish. The analysis worker does the same when
	 * the caller frees the analysis. On a large model that can take seconds. */
	tui_compare_stop(t);
out:
	tui_jobs_stop(t);
	tui_undo_free(t);
	pthread_mutex_destroy(&t->status_lock);
	free(t->table);
	free(t->order);
	free(t);
	return rc;
}
