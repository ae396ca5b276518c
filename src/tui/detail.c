/* The detail view of one site: its SQNR broken into factors, every transform side
 * by side, the quantizer in force, and per-channel magnitude profiles. Tab moves the
 * focus between the three panes. The focused pane is drawn first and the others
 * follow as far as the screen allows, because 24 lines do not hold all three. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <curses.h>

#include "catscope/number_format.h"

#include "tui_impl.h"

/* The dB that fill the factor bars' room: more than 10 log10(12 N^2) at 8 bits
 * (50.9 dB) would waste width, so 8-bit bars come close to full. */
#define FACTOR_FULL_SCALE_DB 54.0

/* A dB value right-aligned in width, "-" when it is NaN (see METRICS_FLAG_*). */
static const char *
db_text(double v, int width, char *buf, size_t size)
{
	if (isnan(v))
		snprintf(buf, size, "%*s", width, "-");
	else
		snprintf(buf, size, "%*.1f", width, number_drop_negative_zero(v, 1));
	return buf;
}

static void
draw_heading(struct tui *t, int y, const char *text, bool focused)
{
	attrset(tui_attr(t, focused ? TUI_COLOR_HEADER : TUI_COLOR_DIM) | A_BOLD);
	mvhline(y, 0, ' ', t->cols);
	mvaddnstr(y, 1, text, t->cols - 1);
	attrset(A_NORMAL);
}

/* One factor as a signed bar: positive dB to the right of the label. */
static void
draw_factor(struct tui *t, int y, const char *label, double db, enum tui_color color)
{
	char text[48];
	int room = t->cols - 32;

	/* Wider bars than this add no resolution that the printed dB lacks. */
	if (room > 96)
		room = 96;
	if (room < 4)
		room = 4;
	if (isnan(db))
		snprintf(text, sizeof(text), " %-18s %8s dB ", label, "-");
	else
		snprintf(text, sizeof(text), " %-18s %+8.1f dB ", label,
			 number_drop_negative_zero(db, 1));
	mvaddnstr(y, 0, text, t->cols);
	if (isnan(db))
		return;
	attrset(tui_attr(t, db < 0 ? TUI_COLOR_BAD : color));
	if (db < 0)
		addstr(t->ascii ? "-" : "\u2500");
	tui_draw_bar(t, fabs(db) / FACTOR_FULL_SCALE_DB * room, room);
	attrset(A_NORMAL);
}

static int
draw_factors(struct tui *t, int y, const struct tui_row *r, const struct quant_config *qc,
	     int max_y)
{
	const struct site_result *s = &r->result;
	double nw = (1 << qc->weight.bits) - 1, nx = (1 << qc->act.bits) - 1;
	char line[160], b[6][16];

	if (r->state != ANALYSIS_DONE) {
		mvaddnstr(y++, 1, r->state == ANALYSIS_FAILED ? r->error : "computing...", t->cols - 1);
		return y;
	}
	struct {
		const char *label;
		double db;
		enum tui_color color;
	} rows[] = {
		{ "12 Nw^2 (W bits)", 10 * log10(12 * nw * nw), TUI_COLOR_BAR },
		{ "12 Nx^2 (A bits)", 10 * log10(12 * nx * nx), TUI_COLOR_BAR },
		/* Without a sample C(T x) is unknown: show C(x) of the statistics instead. */
		{ isnan(s->c_x) ? "C(x) before T" : "C(x)", tui_db(isnan(s->c_x) ? s->c_x_raw : s->c_x),
		  TUI_COLOR_BAR },
		{ "C(W)", tui_db(s->c_w), TUI_COLOR_BAR },
		{ "A", tui_db(s->alignment), TUI_COLOR_BAR },
		{ "headroom to A*", s->headroom_db, TUI_COLOR_BAR_REF },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]) && y < max_y; i++)
		draw_factor(t, y++, rows[i].label, rows[i].db, rows[i].color);
	if (y < max_y) {
		attrset(A_BOLD);
		mvaddnstr(y++, 0, " SQNR dB           total   W-only   X-only", t->cols);
		attrset(A_NORMAL);
	}
	if (y < max_y) {
		const char *note = "";

		if (s->flags & METRICS_FLAG_NO_SAMPLE)
			note = "   (no sample: needs calibration)";
		else if (s->flags & METRICS_FLAG_PARTS_SKIPPED)
			note = "   (W-only, X-only: computing)";
		snprintf(line, sizeof(line), " measured       %s %s %s%s", db_text(s->measured.total_db, 8, b[0], 16),
			 db_text(s->measured.weight_db, 8, b[1], 16), db_text(s->measured.act_db, 8, b[2], 16),
			 note);
		mvaddnstr(y++, 0, line, t->cols);
	}
	if (y < max_y) {
		snprintf(line, sizeof(line), " predicted      %s %s %s   gap %s",
			 db_text(s->predicted.total_db, 8, b[0], 16), db_text(s->predicted.weight_db, 8, b[1], 16),
			 db_text(s->predicted.act_db, 8, b[2], 16), db_text(s->gap_db, 5, b[3], 16));
		mvaddnstr(y++, 0, line, t->cols);
	}
	if (y < max_y) {
		snprintf(line, sizeof(line), " factorised     %s %s %s",
			 db_text(s->factorised.total_db, 8, b[0], 16), db_text(s->factorised.weight_db, 8, b[1], 16),
			 db_text(s->factorised.act_db, 8, b[2], 16));
		mvaddnstr(y++, 0, line, t->cols);
	}
	return y;
}

static int
draw_transforms(struct tui *t, int y, const struct tui_row *r, int max_y)
{
	struct tui_compare *c = &t->compare;
	char line[160], b[6][16];

	if (y < max_y) {
		attrset(A_BOLD);
		mvaddnstr(y++, 0, "   transform     meas dB  pred dB  C(x) dB     A dB  W-only  X-only", t->cols);
		attrset(A_NORMAL);
	}
	pthread_mutex_lock(&c->lock);
	for (int k = 0; k < TUI_TRANSFORM_COUNT && y < max_y; k++) {
		const struct site_result *s = &c->detail[k];
		bool current = r->transform == k;
		int state = c->detail_site == r->index ? c->detail_state[k] : 0;

		if (state == 1)
			snprintf(line, sizeof(line), " %c %-12s %s %s %s %s %s %s", current ? '>' : ' ',
				 tui_transform_specs[k], db_text(s->measured.total_db, 8, b[0], 16),
				 db_text(s->predicted.total_db, 8, b[1], 16), db_text(tui_db(s->c_x), 8, b[2], 16),
				 db_text(tui_db(s->alignment), 8, b[3], 16),
				 db_text(s->measured.weight_db, 7, b[4], 16), db_text(s->measured.act_db, 7, b[5], 16));
		else
			snprintf(line, sizeof(line), " %c %-12s %s", current ? '>' : ' ',
				 tui_transform_specs[k],
				 state == -1 ? c->detail_error[k] : "computing...");
		if (current)
			attron(A_BOLD);
		mvaddnstr(y++, 0, line, t->cols);
		attroff(A_BOLD);
	}
	pthread_mutex_unlock(&c->lock);
	return y;
}

static float profile_max(const float *v, int dim);

/* A row of sparkline cells scaled to the row's own maximum, which follows it: one
 * cell per channel, or per group of channels when d is wider than the screen (the
 * group's maximum, so an outlier stays visible). */
static void
draw_profile(struct tui *t, int y, const char *label, const float *v, int dim)
{
	int width = t->cols - 17 - 11;
	float scale = profile_max(v, dim);
	char text[16];

	mvaddnstr(y, 0, label, 16);
	move(y, 17);
	if (width < 1 || dim < 1)
		return;
	if (width > dim)
		width = dim;
	for (int x = 0; x < width; x++) {
		int from = (int)((long)x * dim / width), to = (int)((long)(x + 1) * dim / width);
		float high = 0;

		for (int i = from; i < to; i++)
			high = fmaxf(high, v[i]);
		addstr(tui_spark(t, scale > 0 ? (int)(high / scale * 7.999f) : 0));
	}
	snprintf(text, sizeof(text), " max %.3g", scale);
	addnstr(text, 11);
}

static int
draw_layers(struct tui *t, int y, const struct tui_row *r, int max_y)
{
	const struct site_result *s = &r->result;
	char line[160], b[6][16];

	if (r->state != ANALYSIS_DONE) {
		if (y < max_y)
			mvaddnstr(y++, 1, "computing...", t->cols - 1);
		return y;
	}
	if (y < max_y) {
		attrset(A_BOLD);
		mvaddnstr(y++, 0, "   layer              rows  C(W) dB     A dB  meas dB  pred dB   gap dB", t->cols);
		attrset(A_NORMAL);
	}
	for (int l = 0; l < s->n_layers && y < max_y; l++) {
		const struct layer_result *lr = &s->layer[l];

		snprintf(line, sizeof(line), "   %-16.16s %6d %s %s %s %s %s", lr->name != NULL ? lr->name : "",
			 lr->rows, db_text(tui_db(lr->c_w), 8, b[0], 16), db_text(tui_db(lr->alignment), 8, b[1], 16),
			 db_text(lr->measured.total_db, 8, b[2], 16), db_text(lr->predicted.total_db, 8, b[3], 16),
			 db_text(lr->gap_db, 8, b[4], 16));
		mvaddnstr(y++, 0, line, t->cols);
	}
	return y;
}

static float
profile_max(const float *v, int dim)
{
	float high = 0;

	for (int i = 0; i < dim; i++)
		high = fmaxf(high, v[i]);
	return high;
}

static int
draw_profiles(struct tui *t, int y, const struct tui_row *r, int max_y)
{
	struct tui_compare *c = &t->compare;
	const struct tui_profile *p = &c->profile;
	bool current;

	pthread_mutex_lock(&c->lock);
	current = c->profile_done == c->profile_wanted && p->site == r->index && p->weight_before != NULL;
	if (!current) {
		if (y < max_y)
			mvaddnstr(y++, 1, "computing...", t->cols - 1);
	} else {
		int dim = p->dim;
		char line[96];

		if (y < max_y) {
			snprintf(line, sizeof(line), " d = %d, after = %s; each row scaled to its max",
				 dim, p->spec);
			mvaddnstr(y++, 0, line, t->cols);
		}
		if (p->note[0] != '\0' && y < max_y)
			mvaddnstr(y++, 1, p->note, t->cols - 1);
		if (p->has_act && y < max_y)
			draw_profile(t, y++, " x rms before", p->act_before, dim);
		if (p->has_act && p->has_after && y < max_y)
			draw_profile(t, y++, " x rms after", p->act_after, dim);
		if (y < max_y)
			draw_profile(t, y++, " |W col| before", p->weight_before, dim);
		if (p->has_after && y < max_y)
			draw_profile(t, y++, " |W col| after", p->weight_after, dim);
	}
	pthread_mutex_unlock(&c->lock);
	return y;
}

/* Asks the comparison thread for this site's transforms and profiles when the
 * selection or its transform changed since the last request. */
static void
detail_request_if_stale(struct tui *t, const struct tui_row *r)
{
	struct tui_compare *c = &t->compare;
	bool stale;

	pthread_mutex_lock(&c->lock);
	stale = c->detail_site != r->index ||
		(c->profile_done == c->profile_wanted && strcmp(c->profile.spec, r->spec) != 0);
	pthread_mutex_unlock(&c->lock);
	if (stale)
		tui_compare_request_detail(t, r->index);
}

void
tui_detail_draw(struct tui *t)
{
	const struct tui_row *r;
	struct quant_config qc;
	char wq[32], aq[32], line[256];
	int y = 1, bottom = t->rows - 1;

	for (int i = 1; i < bottom; i++) {
		move(i, 0);
		clrtoeol();
	}
	if (t->n_order == 0) {
		mvaddnstr(2, 1, "no site selected; Esc returns to the table", t->cols - 1);
		return;
	}
	r = &t->table[t->order[t->selected]];
	detail_request_if_stale(t, r);
	pthread_mutex_lock(&t->a->lock);
	qc = t->a->quant;
	pthread_mutex_unlock(&t->a->lock);
	quant_params_format(&qc.weight, wq, sizeof(wq));
	quant_params_format(&qc.act, aq, sizeof(aq));

	snprintf(line, sizeof(line), "%s  d=%d  transform %s  | W %s (%d levels) A %s (%d levels) %s%s",
		 r->name, r->dim, r->spec, wq, 1 << qc.weight.bits, aq, 1 << qc.act.bits,
		 qc.rounding == QUANT_GPTQ ? "GPTQ" : "RTN", qc.clip_search ? " clip-search" : "");
	draw_heading(t, y++, line, false);

	/* The focused pane comes first so that it always fits; the others follow. */
	for (int i = 0; i < TUI_DETAIL_PANES && y < bottom - 1; i++) {
		int pane = (t->detail_pane + i) % TUI_DETAIL_PANES;
		static const char *const titles[TUI_DETAIL_PANES] = {
			"SQNR factors (Tab: next pane)", "transforms side by side (> current)",
			"channel profiles: activation rms and weight column norms",
			"layers of the site",
		};

		draw_heading(t, y++, titles[pane], i == 0);
		if (pane == 0)
			y = draw_factors(t, y, r, &qc, bottom);
		else if (pane == 1)
			y = draw_transforms(t, y, r, bottom);
		else if (pane == 2)
			y = draw_profiles(t, y, r, bottom);
		else
			y = draw_layers(t, y, r, bottom);
	}
}
