/* The help screen: every key, grouped by what it does. */
#include "config.h"

#include <curses.h>

#include "tui_impl.h"

static const char *const help_lines[] = {
	"Navigation",
	"  j k, Down Up     move the selection        PgDn PgUp, Space  page",
	"  g G, Home End    first, last site          mouse click/wheel select, scroll",
	"  x                jump to the worst measured SQNR",
	"Views",
	"  Enter            detail of the selected site (again: back to the table)",
	"  Tab              next pane of the detail view",
	"  o                model overview (strip chart of SQNR per site)",
	"  ? h F1           this help         Esc, q  back to the table",
	"Table",
	"  s >  <           sort by the next / previous column",
	"  S r              reverse the sort order",
	"  /                filter by site or transform text (Esc clears)",
	"Transforms and quantizer",
	"  t                next transform of the selected site",
	"                   (none smooth hadamard cat1 cat cat:full random)",
	"  T                apply the selected site's transform to every shown site",
	"  w W              weight bits -1 / +1       a A  activation bits -1 / +1",
	"  m                symmetric / asymmetric    R    RTN / GPTQ",
	"  u                undo the last change",
	"  F2               save the session (when the command provides one)",
	"  q Q              quit (q from the table, Q from anywhere)",
	"Columns (dB): C(x) C(W) concentration, A alignment, headrm 10log10(A*/A),",
	"  pred/meas SQNR, gain = SQNR minus the same site without transform (measured,",
	"  or predicted where no sample exists, as without calibration).",
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
		bool heading = help_lines[i][0] != ' ' && i + 1 < n;

		if (heading)
			attrset(tui_attr(t, TUI_COLOR_HEADER) | A_BOLD);
		mvaddnstr(1 + i, 0, help_lines[i], t->cols);
		attrset(A_NORMAL);
	}
}
