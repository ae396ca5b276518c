/* The model overview: the SQNR of every site (measured, else predicted) as a strip
 * chart, one line per block and site kind, the current transform beside the same
 * site without one. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include <curses.h>

#include "catscope/number_format.h"

#include "tui_impl.h"

void
tui_overview_draw(struct tui *t)
{
	double low = INFINITY, high = -INFINITY;
	int n = t->a->n_sites, bottom = t->rows - 1, y = 1;
	int room = t->cols - 45;
	int first;

	for (int i = 1; i < bottom; i++) {
		move(i, 0);
		clrtoeol();
	}
	for (int i = 0; i < n; i++) {
		const struct tui_row *r = &t->table[i];

		if (isfinite(tui_row_quality(r))) {
			low = fmin(low, tui_row_quality(r));
			high = fmax(high, tui_row_quality(r));
		}
		if (r->has_reference && isfinite(r->reference_db)) {
			low = fmin(low, r->reference_db);
			high = fmax(high, r->reference_db);
		}
	}
	attrset(tui_attr(t, TUI_COLOR_HEADER));
	mvhline(y, 0, ' ', t->cols);
	mvaddnstr(y++, 0, " site            now dB  none dB  now      bar: SQNR now,  |: without transform",
		  t->cols);
	attrset(A_NORMAL);
	if (!(high >= low)) {
		mvaddnstr(y, 1, "computing...", t->cols - 1);
		return;
	}
	/* Bars start 3 dB below the lowest value so that the worst site still shows. */
	low -= 3;
	if (room < 8)
		room = 8;

	/* Scroll so the selected site stays on screen. */
	first = t->n_order > 0 ? t->order[t->selected] - (bottom - y) / 2 : 0;
	if (first > n - (bottom - y))
		first = n - (bottom - y);
	if (first < 0)
		first = 0;
	for (int i = first; i < n && y < bottom; i++, y++) {
		const struct tui_row *r = &t->table[i];
		bool selected = t->n_order > 0 && t->order[t->selected] == i;
		double now = tui_row_quality(r);
		double ref = r->has_reference ? r->reference_db : NAN;
		char line[128], now_text[16] = "      -", ref_text[16] = "      -";

		if (!isnan(now))
			snprintf(now_text, sizeof(now_text), "%7.1f", number_drop_negative_zero(now, 1));
		if (!isnan(ref))
			snprintf(ref_text, sizeof(ref_text), "%7.1f", number_drop_negative_zero(ref, 1));
		snprintf(line, sizeof(line), " %-14s %s  %s  %-7.7s ", r->name, now_text, ref_text,
			 r->spec);
		attrset(selected ? tui_attr(t, TUI_COLOR_SELECTED) : (int)A_NORMAL);
		mvaddnstr(y, 0, line, t->cols);
		attrset(tui_attr(t, TUI_COLOR_BAR));
		if (isfinite(now))
			tui_draw_bar(t, (now - low) / (high - low) * room, room);
		attrset(A_NORMAL);
		if (isfinite(ref) && t->cols > 43 + room) {
			/* The reference as a marker at its position on the same scale. */
			int x = 42 + (int)lround((ref - low) / (high - low) * room);

			attrset(tui_attr(t, TUI_COLOR_BAR_REF) | A_BOLD);
			mvaddstr(y, x < t->cols ? x : t->cols - 1, t->ascii ? "|" : "\u2502");
			attrset(A_NORMAL);
		}
	}
}
