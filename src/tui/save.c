/* Saving the session from the explorer: the file name prompt (F2), the questions on
 * replacing a file and on quitting with unsaved changes, and restoring the saved
 * position on start. The export's prompts (E) share the line editing here. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <curses.h>

#include "tui_impl.h"

/* The directory for a file name typed without a slash. */
#define SAVE_DIRECTORY "sessions"

static void
ui_capture(const struct tui *t, struct session_ui *ui)
{
	enum tui_view view = t->view == TUI_VIEW_HELP ? t->previous_view : t->view;

	memset(ui, 0, sizeof(*ui));
	if (t->n_order > 0)
		snprintf(ui->selected, sizeof(ui->selected), "%s", t->table[t->order[t->selected]].name);
	snprintf(ui->sort, sizeof(ui->sort), "%s", tui_column_title(t->sort_column));
	ui->reverse = t->sort_reverse;
	snprintf(ui->filter, sizeof(ui->filter), "%s", t->filter);
	if (view == TUI_VIEW_DETAIL)
		snprintf(ui->view, sizeof(ui->view), "detail");
	else if (view == TUI_VIEW_OVERVIEW)
		snprintf(ui->view, sizeof(ui->view), "overview");
	else
		snprintf(ui->view, sizeof(ui->view), "table");
}

void
tui_restore_ui(struct tui *t)
{
	const struct session_ui *ui = session_ui(t->opt->session);
	int site;

	for (int c = 0; c < COL_COUNT; c++) {
		if (strcmp(ui->sort, tui_column_title((enum tui_column)c)) == 0)
			t->sort_column = (enum tui_column)c;
	}
	t->sort_reverse = ui->reverse;
	snprintf(t->filter, sizeof(t->filter), "%s", ui->filter);
	tui_table_refresh(t);
	site = session_site_index(t->a, ui->selected);
	if (site >= 0)
		tui_table_select_site(t, site);
	if (strcmp(ui->view, "detail") == 0 && t->n_order > 0) {
		t->view = TUI_VIEW_DETAIL;
		tui_compare_request_detail(t, t->order[t->selected]);
	} else if (strcmp(ui->view, "overview") == 0) {
		t->view = TUI_VIEW_OVERVIEW;
	}
}

/* The path a typed name stands for: a name without '/' goes into sessions/ (created
 * if needed) and gets ".json" when it has no extension. */
static int
save_path(const char *input, char *path, size_t size, struct error *err)
{
	const char *base = strrchr(input, '/');
	const char *suffix = strchr(base != NULL ? base : input, '.') == NULL ? ".json" : "";

	if (base == NULL) {
		if (mkdir(SAVE_DIRECTORY, 0777) != 0 && errno != EEXIST)
			return error_set(err, "cannot create the directory %s: %s", SAVE_DIRECTORY,
					 strerror(errno));
		snprintf(path, size, "%s/%s%s", SAVE_DIRECTORY, input, suffix);
	} else {
		snprintf(path, size, "%s%s", input, suffix);
	}
	return 0;
}

static void
save_now(struct tui *t, const char *path)
{
	struct session_ui ui;
	struct error err;
	int length;

	ui_capture(t, &ui);
	if (session_save(t->opt->session, path, t->a, &ui, &err) != 0) {
		tui_status_set(t, true, "saving failed: %s", err.message);
		t->quit_after_save = false;
		return;
	}
	length = session_journal_length(t->opt->session);
	tui_status_set(t, false, "session saved to %s (%d action%s in the journal)", path, length,
		       length == 1 ? "" : "s");
	if (t->quit_after_save)
		t->quit = true;
}

/* Saves under the name in prompt_input, after asking when that would replace a file
 * other than the session's own. */
static void
save_confirm(struct tui *t)
{
	const char *own = session_file(t->opt->session);
	struct error err;
	struct stat st, own_st;

	t->prompt = TUI_PROMPT_NONE;
	if (save_path(t->prompt_input, t->save_path, sizeof(t->save_path), &err) != 0) {
		tui_status_set(t, true, "saving failed: %s", err.message);
		t->quit_after_save = false;
		return;
	}
	/* The session's own file is compared by inode, so "./sessions/x.json" and
	 * "sessions/x.json" count as the same file. */
	if (stat(t->save_path, &st) == 0 &&
	    (own == NULL || stat(own, &own_st) != 0 || st.st_dev != own_st.st_dev ||
	     st.st_ino != own_st.st_ino)) {
		t->prompt = TUI_PROMPT_SAVE_REPLACE;
		return;
	}
	save_now(t, t->save_path);
}

void
tui_prompt_save(struct tui *t, bool quit_after)
{
	const char *file = session_file(t->opt->session);
	const char *prefix = SAVE_DIRECTORY "/";

	if (file != NULL && strncmp(file, prefix, strlen(prefix)) == 0 &&
	    strchr(file + strlen(prefix), '/') == NULL)
		file += strlen(prefix);
	snprintf(t->prompt_default, sizeof(t->prompt_default), "%s", file != NULL ? file : "");
	t->prompt_input[0] = '\0';
	t->prompt = TUI_PROMPT_SAVE_NAME;
	t->quit_after_save = quit_after;
}

/* NOTE: any action since the last save counts as unsaved, even when undos have
 * brought the state back to the saved one, because the journal did change. */
void
tui_request_quit(struct tui *t)
{
	if (t->opt->session != NULL && session_unsaved(t->opt->session))
		t->prompt = TUI_PROMPT_QUIT;
	else
		t->quit = true;
}

void
tui_prompt_key(struct tui *t, int key)
{
	size_t n = strlen(t->prompt_input);

	if (t->prompt == TUI_PROMPT_QUIT) {
		if (key == 'y' || key == 'Y') {
			tui_prompt_save(t, true);
		} else if (key == 'n' || key == 'N') {
			t->prompt = TUI_PROMPT_NONE;
			t->quit = true;
		} else if (key == 27) {
			t->prompt = TUI_PROMPT_NONE;
		}
		return;
	}
	if (t->prompt == TUI_PROMPT_SAVE_REPLACE) {
		if (key == 'y' || key == 'Y') {
			t->prompt = TUI_PROMPT_NONE;
			save_now(t, t->save_path);
		} else if (key == 'n' || key == 'N' || key == 27) {
			t->prompt = TUI_PROMPT_NONE;
			t->quit_after_save = false;
			tui_status_set(t, false, "not saved: %s exists", t->save_path);
		}
		return;
	}
	if (t->prompt == TUI_PROMPT_EXPORT_REPLACE) {
		if (key == 'y' || key == 'Y') {
			t->prompt = TUI_PROMPT_NONE;
			tui_export_start(t, true);
		} else if (key == 'n' || key == 'N' || key == 27) {
			t->prompt = TUI_PROMPT_NONE;
			tui_status_set(t, false, "not exported: %s exists", t->prompt_input);
		}
		return;
	}
	switch (key) {
	case 27: /* Esc */
		if (t->prompt == TUI_PROMPT_EXPORT_DIR) {
			tui_status_set(t, false, "not exported");
		} else {
			t->quit_after_save = false;
			tui_status_set(t, false, "not saved");
		}
		t->prompt = TUI_PROMPT_NONE;
		break;
	case '\n':
	case '\r':
	case KEY_ENTER:
		/* Enter on an empty line takes the default shown in brackets. */
		if (n == 0)
			snprintf(t->prompt_input, sizeof(t->prompt_input), "%s", t->prompt_default);
		if (t->prompt_input[0] == '\0')
			break;
		if (t->prompt == TUI_PROMPT_EXPORT_DIR)
			tui_export_confirm(t);
		else
			save_confirm(t);
		break;
	case KEY_BACKSPACE:
	case 127:
	case 8:
		tui_line_erase_last(t->prompt_input);
		break;
	case 21: /* Ctrl-U clears the line, as in a shell */
		t->prompt_input[0] = '\0';
		break;
	default:
		if (key >= 32 && key < 127)
			tui_line_append(t->prompt_input, sizeof(t->prompt_input), (wchar_t)key);
		break;
	}
}

/* Writes " [DEFAULT]" for the prompt's default, or nothing without one. A long
 * default keeps only its end, which names the file, so that the typed name still
 * fits on an 80-column status line. */
static void
prompt_default_text(const struct tui *t, char *buf, size_t size)
{
	enum { DEFAULT_MAX = 40 };
	size_t length = strlen(t->prompt_default);

	if (length == 0)
		buf[0] = '\0';
	else if (length <= DEFAULT_MAX)
		snprintf(buf, size, " [%s]", t->prompt_default);
	else
		snprintf(buf, size, " [...%s]", t->prompt_default + length - (DEFAULT_MAX - 3));
}

bool
tui_prompt_text(const struct tui *t, char *buf, size_t size)
{
	char shown[64];

	prompt_default_text(t, shown, sizeof(shown));
	switch (t->prompt) {
	case TUI_PROMPT_NONE:
		return false;
	case TUI_PROMPT_SAVE_NAME:
		snprintf(buf, size, "save session as%s: %s_  (Enter saves in %s/, Esc cancels)", shown,
			 t->prompt_input, SAVE_DIRECTORY);
		return true;
	case TUI_PROMPT_SAVE_REPLACE:
		snprintf(buf, size, "%s exists; replace it? y/n", t->save_path);
		return true;
	case TUI_PROMPT_QUIT:
		snprintf(buf, size, "save changes? y/n/Esc");
		return true;
	case TUI_PROMPT_EXPORT_DIR:
		snprintf(buf, size, "export to directory%s: %s_  (Enter exports, Esc cancels)", shown,
			 t->prompt_input);
		return true;
	case TUI_PROMPT_EXPORT_REPLACE:
		snprintf(buf, size, "%s exists; replace it? y/n", t->prompt_input);
		return true;
	}
	return false;
}
