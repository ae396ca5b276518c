/* The help screen: every key, grouped by what it does. */
#include "config.h"

#include <string.h>

#include <curses.h>

#include "tui_impl.h"

/* 22 lines, so that the whole help fits between the title and status lines of an
 * 80x24 terminal. */
static const char *const help_lines[] = {
	"Navigation",
	"  j k, Down Up     move the selection        PgDn PgUp, Space  page",
	"  g G, Home End    first, last site          mouse: click selects, wheel scrolls",
	"  x                jump to the worst SQNR (measured, else predicted)",
	"Views",
	"  Enter            detail of the selected site; Tab: next pane",
	"  o                model overview: SQNR per site, now against no transform",
	"  ? h F1           this help                 Esc q  back;  q Q  quit",
	"Table",
	"  s > <            sort by the next / previous column;  S r  reverse",
	"  /                filter by site or transform text (Esc clears)",
	"Transforms and quantizer",
	"  t                next transform: none smooth hadamard cat1 cat cat:full random",
	"  T                apply the selected site's transform to every shown site",
	"  w W  a A         weight / activation bits -1 / +1",
	"  m  R             symmetric / asymmetric;  RTN / GPTQ",
	"  u                undo the last change      F2  save the session",
	"  p  E  K          perplexity on --heldout text;  export;  KV cache 4-bit on/off",
	"Columns (dB): C(x) C(W) concentration, A alignment, headrm 10log10(A*/A),",
	"  pred/meas SQNR, gain = SQNR minus the same site without transform",
	"  (measured, or predicted where no sample exists, as without calibration).",
	"Press any key to return.",
};

void
tui_help_draw(struct tui *t)
{
	int n = (int)(sizeof(help_lines) / sizeof(help_lines[0]));
	int bottom = t->rows - 1;

	for (int i = 1; i < bottom; i++) {
		move(i, 0);
		clrtoeol();
	}
	for (int i = 0; i < n && 1 + i < bottom; i++) {
		bool heading = help_lines[i][0] != ' ' && i + 1 < n && strncmp(help_lines[i], "Columns", 7) != 0;

		if (heading)
			attrset(tui_attr(t, TUI_COLOR_HEADER) | A_BOLD);
		mvaddnstr(1 + i, 0, help_lines[i], t->cols);
		attrset(A_NORMAL);
	}
}
