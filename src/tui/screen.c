/* Terminal setup and teardown, colours, resizing and the bar and sparkline glyphs. */
#include "config.h"

#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "catscope/log.h"
#include "tui_impl.h"

static bool screen_active;
static SCREEN *screen_terminal;

static const char *const bar_eighths_utf8[8] = {
	"", "\u258f", "\u258e", "\u258d", "\u258c", "\u258b", "\u258a", "\u2589",
};
static const char *const spark_utf8[8] = {
	"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588",
};
static const char *const spark_ascii[8] = { "_", ".", "-", "~", "=", "+", "*", "#" };

/* Ends curses before a fatal message is printed, so the message lands on a sane
 * terminal instead of inside the drawn screen. */
static void
screen_fatal_hook(void)
{
	tui_screen_stop();
}

static bool
locale_is_utf8(void)
{
	const char *codeset = nl_langinfo(CODESET);

	return codeset != NULL && (strcmp(codeset, "UTF-8") == 0 || strcmp(codeset, "utf8") == 0);
}

static void
screen_init_colors(struct tui *t)
{
	const char *no_color = getenv("NO_COLOR");

	t->color = !t->opt->no_color && (no_color == NULL || no_color[0] == '\0') && has_colors();
	if (!t->color)
		return;
	start_color();
	use_default_colors();
	init_pair(TUI_COLOR_TITLE, COLOR_BLACK, COLOR_CYAN);
	init_pair(TUI_COLOR_HEADER, COLOR_BLACK, COLOR_GREEN);
	init_pair(TUI_COLOR_SELECTED, COLOR_BLACK, COLOR_CYAN);
	init_pair(TUI_COLOR_GOOD, COLOR_GREEN, -1);
	init_pair(TUI_COLOR_FAIR, COLOR_YELLOW, -1);
	init_pair(TUI_COLOR_BAD, COLOR_RED, -1);
	init_pair(TUI_COLOR_DIM, COLOR_BLUE, -1);
	init_pair(TUI_COLOR_STATUS, COLOR_WHITE, COLOR_BLUE);
	init_pair(TUI_COLOR_ERROR, COLOR_WHITE, COLOR_RED);
	init_pair(TUI_COLOR_BAR, COLOR_CYAN, -1);
	init_pair(TUI_COLOR_BAR_REF, COLOR_MAGENTA, -1);
}

int
tui_screen_start(struct tui *t, struct error *err)
{
	setlocale(LC_ALL, "");
	t->ascii = t->opt->ascii || !locale_is_utf8();
	/* initscr() would print its own message and exit on an unknown TERM, so newterm(),
	 * which returns NULL instead, lets the error name TERM and the fix. */
	screen_terminal = newterm(NULL, stdout, stdin);
	if (screen_terminal == NULL)
		return error_set(err, "cannot open the terminal: TERM is '%s', which the terminfo "
				 "database does not describe; set TERM to a known type such as "
				 "xterm-256color", getenv("TERM") != NULL ? getenv("TERM") : "");
	set_term(screen_terminal);
	screen_active = true;
	log_set_fatal_hook(screen_fatal_hook);
	cbreak();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	curs_set(0);
	set_escdelay(25);
	/* Short enough that results and the spinner appear promptly, long enough that
	 * an idle explorer costs nothing measurable. */
	timeout(100);
	mousemask(BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
	mouseinterval(0);
	screen_init_colors(t);
	tui_screen_resize(t);
	return 0;
}

void
tui_screen_stop(void)
{
	if (!screen_active)
		return;
	screen_active = false;
	endwin();
	delscreen(screen_terminal);
	screen_terminal = NULL;
	log_set_fatal_hook(NULL);
}

void
tui_screen_resize(struct tui *t)
{
	getmaxyx(stdscr, t->rows, t->cols);
	clear();
}

int
tui_attr(const struct tui *t, enum tui_color color)
{
	if (t->color)
		return COLOR_PAIR(color);
	switch (color) {
	case TUI_COLOR_TITLE:
	case TUI_COLOR_HEADER:
	case TUI_COLOR_SELECTED:
	case TUI_COLOR_STATUS:
		return A_REVERSE;
	case TUI_COLOR_BAD:
	case TUI_COLOR_ERROR:
		return A_BOLD;
	case TUI_COLOR_DIM:
		return A_DIM;
	default:
		return A_NORMAL;
	}
}

void
tui_draw_bar(const struct tui *t, double value, int width)
{
	int eighths;

	if (!(value > 0))
		value = 0;
	if (value > width)
		value = width;
	eighths = (int)lround(value * 8);
	for (int i = 0; i < eighths / 8; i++)
		addstr(t->ascii ? "#" : "\u2588");
	if (eighths % 8 == 0)
		return;
	if (!t->ascii)
		addstr(bar_eighths_utf8[eighths % 8]);
	else
		addstr(eighths % 8 >= 4 ? "=" : "-");
}

const char *
tui_spark(const struct tui *t, int level)
{
	if (level < 0)
		level = 0;
	if (level > 7)
		level = 7;
	return t->ascii ? spark_ascii[level] : spark_utf8[level];
}
