/* The site table: snapshots of every site, filtered and sorted, drawn one row per
 * site with a colour scale on the measured SQNR. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "catscope/number_format.h"

#include "tui_impl.h"

struct column {
	const char *title;
	int width;
};

static const struct column columns[COL_COUNT] = {
	[COL_SITE] = { "site", 14 },
	[COL_DIM] = { "d", 5 },
	[COL_TRANSFORM] = { "transform", 11 },
	[COL_CX] = { "C(x)", 7 },
	[COL_CW] = { "C(W)", 7 },
	[COL_ALIGN] = { "A", 7 },
	[COL_HEADROOM] = { "headrm", 7 },
	[COL_PREDICTED] = { "pred", 7 },
	[COL_MEASURED] = { "meas", 7 },
	[COL_DELTA] = { "gain", 7 },
	[COL_WEIGHT_ONLY] = { "W-only", 8 },
	[COL_ACT_ONLY] = { "X-only", 8 },
	[COL_GAP] = { "gap", 7 },
	[COL_BEST] = { "A*", 7 },
	[COL_TOKENS] = { "tokens", 8 },
};

/* Columns after the site name that must fit in 80 cells: d through gain, and the
 * state marker's separator. */
#define BASE_COLUMNS_WIDTH 66

/* The width of the site column and how many leading characters of each name to
 * skip: the whole "blk.B.kind" when it fits beside the base columns, else without
 * "blk." (models with 10 blocks or more need 15 cells for "blk.10.ffn_down"). */
static int
site_width(const struct tui *t, int *skip)
{
	int longest = columns[COL_SITE].width;

	for (int i = 0; i < t->a->n_sites; i++) {
		int n = (int)strlen(t->table[i].name);

		if (n > longest)
			longest = n;
	}
	*skip = 0;
	if (longest + BASE_COLUMNS_WIDTH > t->cols && longest > columns[COL_SITE].width) {
		*skip = 4;
		longest -= 4;
	}
	return longest;
}

static int
column_width(const struct tui *t, enum tui_column c)
{
	int skip;

	return c == COL_SITE ? site_width(t, &skip) : columns[c].width;
}

/* Rows the table body gets: the screen minus title, header and status lines. */
int
tui_table_visible_rows(const struct tui *t)
{
	int n = t->rows - 3;

	return n > 1 ? n : 1;
}

const char *
tui_column_title(enum tui_column c)
{
	return columns[c].title;
}

double
tui_db(double ratio)
{
	return ratio > 0 ? 10 * log10(ratio) : NAN;
}

/* The SQNR the colour scale, the worst-site jump and the gain column rank by: the
 * measured one, or the predicted one when the site has no sample to measure on
 * (no calibration). The reference uses the same choice, so gains compare like with
 * like. */
double
tui_row_quality(const struct tui_row *r)
{
	if (r->state != ANALYSIS_DONE)
		return NAN;
	if (!isnan(r->result.measured.total_db))
		return r->result.measured.total_db;
	/* Without a sample the prediction of a transformed site is NaN (its activation
	 * noise is unknown), which the caller shows as unknown. */
	return r->result.predicted.total_db;
}

/* The numeric value of a column, NaN when the site has none yet. */
static double
row_value(const struct tui_row *r, enum tui_column c)
{
	const struct site_result *s = &r->result;
	bool done = r->state == ANALYSIS_DONE;

	switch (c) {
	case COL_SITE:
		return r->index;
	case COL_DIM:
		return r->dim;
	case COL_CX:
		return done ? tui_db(s->c_x) : NAN;
	case COL_CW:
		return done ? tui_db(s->c_w) : NAN;
	case COL_ALIGN:
		return done ? tui_db(s->alignment) : NAN;
	case COL_HEADROOM:
		return done ? s->headroom_db : NAN;
	case COL_PREDICTED:
		return done ? s->predicted.total_db : NAN;
	case COL_MEASURED:
		return done ? s->measured.total_db : NAN;
	case COL_DELTA:
		return done && r->has_reference ? tui_row_quality(r) - r->reference_db : NAN;
	case COL_WEIGHT_ONLY:
		return done ? s->measured.weight_db : NAN;
	case COL_ACT_ONLY:
		return done ? s->measured.act_db : NAN;
	case COL_GAP:
		return done ? s->gap_db : NAN;
	case COL_BEST:
		/* A* is skipped (NaN) above the full-size limit, so A*_k is shown instead. */
		if (!done)
			return NAN;
		return tui_db(isnan(s->best_full) ? s->best_k : s->best_full);
	case COL_TOKENS:
		return done ? s->tokens_used : NAN;
	default:
		return NAN;
	}
}

static const struct tui *sort_tui;

/* Orders by the sort column; sites without a value go last in either direction. */
static int
compare_rows(const void *pa, const void *pb)
{
	const struct tui *t = sort_tui;
	const struct tui_row *a = &t->table[*(const int *)pa];
	const struct tui_row *b = &t->table[*(const int *)pb];
	int sign = t->sort_reverse ? -1 : 1;
	int c;

	if (t->sort_column == COL_TRANSFORM) {
		c = strcmp(a->spec, b->spec);
	} else {
		double va = row_value(a, t->sort_column), vb = row_value(b, t->sort_column);

		if (isnan(va) != isnan(vb))
			return isnan(va) ? 1 : -1;
		c = isnan(va) ? 0 : (va > vb) - (va < vb);
	}
	if (c == 0)
		return (a->index > b->index) - (a->index < b->index);
	return sign * c;
}

void
tui_table_refresh(struct tui *t)
{
	struct analysis *a = t->a;
	int selected_site = t->n_order > 0 ? t->table[t->order[t->selected]].index : 0;

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n_sites; i++) {
		const struct analysis_site *s = &a->sites[i];
		struct tui_row *r = &t->table[i];

		r->index = i;
		snprintf(r->name, sizeof(r->name), "blk.%d.%s", s->block, site_kind_name(s->kind));
		transform_spec_format(&s->spec, r->spec, sizeof(r->spec));
		r->transform = tui_transform_index(&s->spec);
		r->dim = s->kind == SITE_ATTN_OUT ? a->model->config.n_heads * a->model->config.head_dim
			 : s->kind == SITE_FFN_DOWN ? a->model->config.hidden_dim : a->model->config.dim;
		r->state = s->state;
		if (s->state == ANALYSIS_DONE)
			r->result = s->result;
		snprintf(r->error, sizeof(r->error), "%s", s->error);
	}
	pthread_mutex_unlock(&a->lock);

	pthread_mutex_lock(&t->compare.lock);
	for (int i = 0; i < a->n_sites; i++) {
		struct tui_row *r = &t->table[i];

		r->has_reference = t->compare.ref_valid[i] &&
				   t->compare.ref_generation[i] == t->compare.generation;
		r->reference_db = t->compare.reference[i].measured.total_db;
		if (isnan(r->reference_db) && isfinite(t->compare.reference[i].predicted.total_db))
			r->reference_db = t->compare.reference[i].predicted.total_db;
	}
	pthread_mutex_unlock(&t->compare.lock);

	t->n_order = 0;
	for (int i = 0; i < a->n_sites; i++) {
		if (tui_filter_match(t, &t->table[i]))
			t->order[t->n_order++] = i;
	}
	sort_tui = t;
	qsort(t->order, (size_t)t->n_order, sizeof(*t->order), compare_rows);

	/* Keep the same site selected when the order changes under it. */
	t->selected = 0;
	for (int p = 0; p < t->n_order; p++) {
		if (t->order[p] == selected_site)
			t->selected = p;
	}
}

void
tui_table_select_site(struct tui *t, int site)
{
	for (int p = 0; p < t->n_order; p++) {
		if (t->order[p] == site)
			t->selected = p;
	}
}

/* The site with the lowest SQNR (tui_row_quality) among the shown rows, or -1. */
int
tui_table_worst(const struct tui *t)
{
	int worst = -1;
	double low = INFINITY;

	for (int p = 0; p < t->n_order; p++) {
		double v = tui_row_quality(&t->table[t->order[p]]);

		if (!isnan(v) && v < low) {
			low = v;
			worst = t->order[p];
		}
	}
	return worst;
}

/* The colour of a measured SQNR, by its place between the lowest and highest shown:
 * the bottom quarter is bad, the top half good. */
static enum tui_color
measured_color(const struct tui *t, double v)
{
	double low = INFINITY, high = -INFINITY;

	for (int p = 0; p < t->n_order; p++) {
		double x = tui_row_quality(&t->table[t->order[p]]);

		if (!isnan(x) && isfinite(x)) {
			low = fmin(low, x);
			high = fmax(high, x);
		}
	}
	if (isnan(v) || !(high > low))
		return TUI_COLOR_GOOD;
	if (v < low + 0.25 * (high - low))
		return TUI_COLOR_BAD;
	return v < low + 0.5 * (high - low) ? TUI_COLOR_FAIR : TUI_COLOR_GOOD;
}

static int
shown_columns(const struct tui *t, enum tui_column *shown)
{
	int used = 0, n = 0;

	for (int c = 0; c < COL_COUNT; c++) {
		if (c > COL_DELTA && used + column_width(t, c) > t->cols - 1)
			break;
		shown[n++] = (enum tui_column)c;
		used += column_width(t, c) + (c == COL_SITE ? 1 : 0);
	}
	return n;
}

static void
format_cell(const struct tui_row *r, enum tui_column c, int width, int skip, char *buf,
	    size_t size)
{
	double v;

	switch (c) {
	case COL_SITE:
		snprintf(buf, size, "%-*.*s", width, width,
			 (int)strlen(r->name) > skip ? r->name + skip : r->name);
		return;
	case COL_TRANSFORM:
		snprintf(buf, size, " %-*.*s", width - 1, width - 1, r->spec);
		return;
	case COL_DIM:
		if (r->dim > 0)
			snprintf(buf, size, "%*d", width, r->dim);
		else
			snprintf(buf, size, "%*s", width, "");
		return;
	default:
		break;
	}
	v = row_value(r, c);
	if (r->state == ANALYSIS_FAILED && c == COL_CX)
		snprintf(buf, size, " %-*.*s", width - 1, width - 1, "failed");
	else if (c == COL_DELTA && r->state == ANALYSIS_DONE && !r->has_reference)
		snprintf(buf, size, "%*s", width, "...");
	else if (isnan(v))
		snprintf(buf, size, "%*s", width, r->state == ANALYSIS_DONE ? "-" : "");
	else if (isinf(v))
		snprintf(buf, size, "%*s", width, v > 0 ? "inf" : "-inf");
	else if (c == COL_TOKENS)
		snprintf(buf, size, "%*.0f", width, v);
	else if (c == COL_DELTA)
		snprintf(buf, size, "%+*.1f", width, number_drop_negative_zero(v, 1));
	else
		snprintf(buf, size, "%*.1f", width, number_drop_negative_zero(v, 1));
}

static void
draw_header(struct tui *t, const enum tui_column *shown, int n)
{
	int x = 0;

	attrset(tui_attr(t, TUI_COLOR_HEADER));
	mvhline(1, 0, ' ', t->cols);
	for (int i = 0; i < n; i++) {
		enum tui_column c = shown[i];
		char buf[32];
		const char *arrow = "";
		int w = column_width(t, c);

		if (t->sort_column == c)
			arrow = t->sort_reverse ? "v" : "^";
		if (c == COL_SITE || c == COL_TRANSFORM) {
			snprintf(buf, sizeof(buf), "%s%s%s", c == COL_TRANSFORM ? " " : "", columns[c].title,
				 arrow);
		} else {
			/* A title right-aligned in its column keeps one space before it, so that
			 * the arrow cannot join it to the previous title ("Aheadrm^"). Without
			 * room the title loses its last letters. */
			int room = w - 1 - (int)strlen(arrow);

			snprintf(buf, sizeof(buf), "%*.*s%s", w - (int)strlen(arrow), room, columns[c].title,
				 arrow);
		}
		if (t->sort_column == c)
			attron(A_BOLD);
		mvaddnstr(1, x, buf, t->cols - x);
		if (t->sort_column == c)
			attroff(A_BOLD);
		x += w + (c == COL_SITE ? 1 : 0);
	}
	attrset(A_NORMAL);
}

int
tui_table_column_count(const struct tui *t)
{
	enum tui_column shown[COL_COUNT];

	return shown_columns(t, shown);
}

void
tui_table_draw(struct tui *t)
{
	enum tui_column shown[COL_COUNT];
	int n = shown_columns(t, shown);
	int visible = tui_table_visible_rows(t);

	draw_header(t, shown, n);
	if (t->selected >= t->n_order)
		t->selected = t->n_order > 0 ? t->n_order - 1 : 0;
	if (t->selected < t->top)
		t->top = t->selected;
	if (t->selected >= t->top + visible)
		t->top = t->selected - visible + 1;
	if (t->top > 0 && t->top + visible > t->n_order)
		t->top = t->n_order > visible ? t->n_order - visible : 0;

	for (int line = 0; line < visible; line++) {
		int p = t->top + line, x = 0, y = 2 + line;
		const struct tui_row *r;
		bool selected = p == t->selected;

		move(y, 0);
		clrtoeol();
		if (p >= t->n_order) {
			if (p == 0)
				mvaddnstr(y, 1, t->filter[0] != '\0' ? "no site matches the filter; Esc clears it"
								     : "no sites",
					  t->cols - 1);
			continue;
		}
		r = &t->table[t->order[p]];
		if (selected) {
			attrset(tui_attr(t, TUI_COLOR_SELECTED));
			mvhline(y, 0, ' ', t->cols);
		}
		for (int i = 0; i < n; i++) {
			enum tui_column c = shown[i];
			char buf[64];
			int w = column_width(t, c);
			int skip;

			site_width(t, &skip);
			format_cell(r, c, w, skip, buf, sizeof(buf));
			if (!selected && c == (isnan(r->result.measured.total_db) ? COL_PREDICTED : COL_MEASURED) &&
			    r->state == ANALYSIS_DONE)
				attrset(tui_attr(t, measured_color(t, tui_row_quality(r))));
			else if (!selected && c == COL_DELTA && !isnan(row_value(r, c)))
				attrset(tui_attr(t, row_value(r, c) < -0.05 ? TUI_COLOR_BAD
						    : row_value(r, c) > 0.05 ? TUI_COLOR_GOOD
									     : TUI_COLOR_DIM));
			mvaddnstr(y, x, buf, t->cols - x > 0 ? t->cols - x : 0);
			if (!selected)
				attrset(A_NORMAL);
			x += w + (c == COL_SITE ? 1 : 0);
		}
		/* The state marker after the site name: * computing, . waiting, ! failed. */
		if (r->state != ANALYSIS_DONE && t->cols > column_width(t, COL_SITE))
			mvaddstr(y, column_width(t, COL_SITE),
				 r->state == ANALYSIS_FAILED ? "!" : (r->state == ANALYSIS_RUNNING ? "*" : "."));
		attrset(A_NORMAL);
	}
}
