/* Key and mouse handling: navigation, sorting, transforms, quantizer changes and
 * the undo stack. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "catscope/alloc.h"
#include "tui_impl.h"

/* Saves the transforms and quantizer before a change, dropping the oldest state
 * when the stack is full. */
static void
undo_push(struct tui *t)
{
	struct analysis *a = t->a;
	struct tui_undo *u;

	if (t->n_undo == TUI_UNDO_MAX) {
		free(t->undo[0].specs);
		memmove(&t->undo[0], &t->undo[1], (TUI_UNDO_MAX - 1) * sizeof(t->undo[0]));
		t->n_undo--;
	}
	u = &t->undo[t->n_undo++];
	u->specs = alloc_array((size_t)a->n_sites, sizeof(*u->specs));
	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n_sites; i++)
		u->specs[i] = a->sites[i].spec;
	u->quant = a->quant;
	pthread_mutex_unlock(&a->lock);
}

void
tui_undo_free(struct tui *t)
{
	for (int i = 0; i < t->n_undo; i++)
		free(t->undo[i].specs);
	t->n_undo = 0;
}

static void
undo_pop(struct tui *t)
{
	struct analysis *a = t->a;
	struct tui_undo *u;
	struct quant_config current;

	if (t->n_undo == 0) {
		tui_status_set(t, false, "nothing to undo");
		return;
	}
	u = &t->undo[--t->n_undo];
	pthread_mutex_lock(&a->lock);
	current = a->quant;
	pthread_mutex_unlock(&a->lock);
	if (memcmp(&current, &u->quant, sizeof(current)) != 0) {
		analysis_set_quant(a, &u->quant);
		tui_compare_set_quant(t, &u->quant);
	}
	for (int i = 0; i < a->n_sites; i++) {
		if (!transform_spec_equal(&a->sites[i].spec, &u->specs[i]))
			analysis_set_transform(a, i, &u->specs[i]);
	}
	free(u->specs);
	if (t->opt->session != NULL)
		session_record_undo(t->opt->session);
	tui_status_set(t, false, "undone (%d more state%s to undo)", t->n_undo,
		       t->n_undo == 1 ? "" : "s");
}

static int
selected_site(const struct tui *t)
{
	return t->n_order > 0 ? t->order[t->selected] : -1;
}

/* The next transform in the cycle that the site's width allows. */
static void
cycle_transform(struct tui *t, int site)
{
	int k;
	struct transform_spec spec;
	struct error err;

	if (site < 0)
		return;
	pthread_mutex_lock(&t->a->lock);
	k = tui_transform_index(&t->a->sites[site].spec);
	pthread_mutex_unlock(&t->a->lock);
	/* A spec outside the list (set by a session, say) restarts the cycle at none. */
	if (k < 0)
		k = TUI_TRANSFORM_COUNT - 1;
	for (int step = 1; step <= TUI_TRANSFORM_COUNT; step++) {
		const char *next = tui_transform_specs[(k + step) % TUI_TRANSFORM_COUNT];

		if (transform_spec_parse(next, &spec, &err) != 0)
			continue;
		if ((spec.kind == TRANSFORM_CAT || spec.kind == TRANSFORM_RANDOM) &&
		    spec.block == TRANSFORM_BLOCK_FULL && t->table[site].dim > TRANSFORM_DENSE_MAX)
			continue;
		undo_push(t);
		analysis_set_transform(t->a, site, &spec);
		if (t->opt->session != NULL)
			session_record_transform(t->opt->session, t->a, site, &spec);
		tui_status_set(t, false, "%s: transform %s", t->table[site].name, next);
		if (t->view == TUI_VIEW_DETAIL)
			tui_compare_request_detail(t, site);
		return;
	}
}

/* Applies the selected site's transform to every shown (filtered) site. */
static void
apply_to_shown(struct tui *t)
{
	int site = selected_site(t);
	struct transform_spec spec;
	char name[32];

	if (site < 0)
		return;
	undo_push(t);
	pthread_mutex_lock(&t->a->lock);
	spec = t->a->sites[site].spec;
	pthread_mutex_unlock(&t->a->lock);
	for (int p = 0; p < t->n_order; p++)
		analysis_set_transform(t->a, t->order[p], &spec);
	if (t->opt->session != NULL)
		session_record_apply_all(t->opt->session, t->a, t->order, t->n_order, &spec);
	transform_spec_format(&spec, name, sizeof(name));
	tui_status_set(t, false, "transform %s applied to %d site%s", name, t->n_order,
		       t->n_order == 1 ? "" : "s");
}

enum quant_change { WEIGHT_BITS, ACT_BITS, MODE, ROUNDING };

static void
change_quant(struct tui *t, enum quant_change what, int delta)
{
	struct quant_config qc;
	struct quant_params *p;

	pthread_mutex_lock(&t->a->lock);
	qc = t->a->quant;
	pthread_mutex_unlock(&t->a->lock);
	switch (what) {
	case WEIGHT_BITS:
	case ACT_BITS:
		p = what == WEIGHT_BITS ? &qc.weight : &qc.act;
		if (p->bits + delta < QUANT_BITS_MIN || p->bits + delta > QUANT_BITS_MAX) {
			tui_status_set(t, true, "%s bits stay within %d..%d",
				       what == WEIGHT_BITS ? "weight" : "activation", QUANT_BITS_MIN,
				       QUANT_BITS_MAX);
			return;
		}
		p->bits += delta;
		break;
	case MODE:
		qc.weight.mode = qc.weight.mode == QUANT_SYMMETRIC ? QUANT_ASYMMETRIC : QUANT_SYMMETRIC;
		qc.act.mode = qc.weight.mode;
		break;
	case ROUNDING:
		qc.rounding = qc.rounding == QUANT_RTN ? QUANT_GPTQ : QUANT_RTN;
		break;
	}
	undo_push(t);
	analysis_set_quant(t->a, &qc);
	tui_compare_set_quant(t, &qc);
	if (t->opt->session != NULL)
		session_record_quant(t->opt->session, &qc);
}

static void
move_selection(struct tui *t, int delta)
{
	t->selected += delta;
	if (t->selected >= t->n_order)
		t->selected = t->n_order - 1;
	if (t->selected < 0)
		t->selected = 0;
	if (t->view == TUI_VIEW_DETAIL && t->n_order > 0)
		tui_compare_request_detail(t, selected_site(t));
}

static void
handle_mouse(struct tui *t)
{
	MEVENT event;

	if (getmouse(&event) != OK)
		return;
	if (event.bstate & BUTTON4_PRESSED) {
		move_selection(t, -3);
	} else if (event.bstate & BUTTON5_PRESSED) {
		move_selection(t, 3);
	} else if ((event.bstate & (BUTTON1_CLICKED | BUTTON1_PRESSED)) && t->view == TUI_VIEW_TABLE) {
		int p = t->top + event.y - 2;

		if (event.y >= 2 && p < t->n_order)
			t->selected = p;
	}
}

/* Moves the sort to the next or previous column that is on screen. */
static void
change_sort_column(struct tui *t, int step)
{
	int n = tui_table_column_count(t);
	int c = (int)t->sort_column < n ? (int)t->sort_column : 0;

	t->sort_column = (enum tui_column)((c + step + n) % n);
	tui_status_set(t, false, "sorted by %s", tui_column_title(t->sort_column));
}

static void
open_view(struct tui *t, enum tui_view view)
{
	if (t->view == view) {
		t->view = TUI_VIEW_TABLE;
		return;
	}
	if (view == TUI_VIEW_HELP)
		t->previous_view = t->view;
	t->view = view;
	if (view == TUI_VIEW_DETAIL && t->n_order > 0)
		tui_compare_request_detail(t, selected_site(t));
}

void
tui_handle_text(struct tui *t, wchar_t ch)
{
	if (t->prompt == TUI_PROMPT_SAVE_NAME || t->prompt == TUI_PROMPT_EXPORT_DIR) {
		tui_line_append(t->prompt_input, sizeof(t->prompt_input), ch);
		return;
	}
	if (t->prompt != TUI_PROMPT_NONE)
		return;
	if (t->editing_filter) {
		tui_filter_text(t, ch);
		return;
	}
	/* Any key leaves the help. */
	if (t->view == TUI_VIEW_HELP)
		t->view = t->previous_view;
}

void
tui_handle_key(struct tui *t, int key)
{
	int page = tui_table_visible_rows(t) - 1;

	if (t->prompt != TUI_PROMPT_NONE && key != KEY_RESIZE && key != KEY_MOUSE) {
		tui_prompt_key(t, key);
		return;
	}
	if (t->editing_filter) {
		tui_filter_key(t, key);
		return;
	}
	/* Any key leaves the help, and is not acted on further. */
	if (t->view == TUI_VIEW_HELP && key != KEY_RESIZE && key != KEY_MOUSE) {
		t->view = t->previous_view;
		return;
	}
	switch (key) {
	case 'q':
		if (t->view != TUI_VIEW_TABLE)
			t->view = TUI_VIEW_TABLE;
		else
			tui_request_quit(t);
		break;
	case 'Q':
		tui_request_quit(t);
		break;
	case KEY_DOWN:
	case 'j':
		move_selection(t, 1);
		break;
	case KEY_UP:
	case 'k':
		move_selection(t, -1);
		break;
	case KEY_NPAGE:
	case ' ':
		move_selection(t, page > 0 ? page : 1);
		break;
	case KEY_PPAGE:
		move_selection(t, -(page > 0 ? page : 1));
		break;
	case 'g':
	case KEY_HOME:
		move_selection(t, -t->n_order);
		break;
	case 'G':
	case KEY_END:
		move_selection(t, t->n_order);
		break;
	case '\n':
	case '\r':
	case KEY_ENTER:
		open_view(t, TUI_VIEW_DETAIL);
		break;
	case 27: /* Esc: back to the table, or clear the filter there */
		if (t->view != TUI_VIEW_TABLE)
			t->view = TUI_VIEW_TABLE;
		else
			t->filter[0] = '\0';
		break;
	case '\t':
		if (t->view == TUI_VIEW_DETAIL)
			t->detail_pane = (t->detail_pane + 1) % TUI_DETAIL_PANES;
		break;
	case 'o':
		open_view(t, TUI_VIEW_OVERVIEW);
		break;
	case '?':
	case 'h':
	case KEY_F(1):
		open_view(t, TUI_VIEW_HELP);
		break;
	case '>':
	case 's':
		change_sort_column(t, 1);
		break;
	case '<':
		change_sort_column(t, -1);
		break;
	case 'S':
	case 'r':
		t->sort_reverse = !t->sort_reverse;
		break;
	case '/':
		t->editing_filter = true;
		t->filter[0] = '\0';
		break;
	case 'x': {
		int worst = tui_table_worst(t);

		if (worst >= 0) {
			tui_table_select_site(t, worst);
			move_selection(t, 0);
		}
		break;
	}
	case 't':
		cycle_transform(t, selected_site(t));
		break;
	case 'T':
		apply_to_shown(t);
		break;
	case 'w':
		change_quant(t, WEIGHT_BITS, -1);
		break;
	case 'W':
		change_quant(t, WEIGHT_BITS, 1);
		break;
	case 'a':
		change_quant(t, ACT_BITS, -1);
		break;
	case 'A':
		change_quant(t, ACT_BITS, 1);
		break;
	case 'm':
		change_quant(t, MODE, 0);
		break;
	case 'R':
		change_quant(t, ROUNDING, 0);
		break;
	case 'u':
		undo_pop(t);
		break;
	case 'p':
		tui_perplexity_request(t);
		break;
	case 'K':
		t->kv_bits = t->kv_bits == 0 ? 4 : 0;
		tui_status_set(t, false, "%s", t->kv_bits ? "KV cache 4-bit (asymmetric, per head) for p and E"
							  : "KV cache unquantized for p and E");
		break;
	case 'E':
		tui_export_prompt(t);
		break;
	case KEY_F(2):
		if (t->opt->session != NULL)
			tui_prompt_save(t, false);
		break;
	case KEY_MOUSE:
		handle_mouse(t);
		break;
	case KEY_RESIZE:
		tui_screen_resize(t);
		break;
	default:
		break;
	}
}
