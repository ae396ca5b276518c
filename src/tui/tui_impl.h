/* Internal to the explorer: the state every view draws from and the functions the
 * views, keys and screen files share. */
#ifndef CATSCOPE_TUI_IMPL_H
#define CATSCOPE_TUI_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <wchar.h>

#include "catscope/analysis.h"
#include "catscope/export.h"
#include "catscope/tui.h"

/* Transforms in the order t cycles through them and the detail view lists them. */
#define TUI_TRANSFORM_COUNT 7
extern const char *const tui_transform_specs[TUI_TRANSFORM_COUNT];
/* The position of spec in that list, or -1 for a spec not listed (such as cat:32). */
int tui_transform_index(const struct transform_spec *spec);

enum tui_view { TUI_VIEW_TABLE, TUI_VIEW_DETAIL, TUI_VIEW_OVERVIEW, TUI_VIEW_HELP };

/* A question on the status line that takes every key until answered. */
enum tui_prompt {
	TUI_PROMPT_NONE,
	TUI_PROMPT_SAVE_NAME,    /* the session file name, after F2 */
	TUI_PROMPT_SAVE_REPLACE, /* "replace the existing session file? y/n" */
	TUI_PROMPT_QUIT,         /* "save changes? y/n/Esc" before quitting */
	TUI_PROMPT_EXPORT_DIR,   /* the export's destination directory, after E */
	TUI_PROMPT_EXPORT_REPLACE, /* "replace the existing directory? y/n" */
};

enum tui_color {
	TUI_COLOR_TITLE = 1,
	TUI_COLOR_HEADER,
	TUI_COLOR_SELECTED,
	TUI_COLOR_GOOD,
	TUI_COLOR_FAIR,
	TUI_COLOR_BAD,
	TUI_COLOR_DIM,
	TUI_COLOR_STATUS,
	TUI_COLOR_ERROR,
	TUI_COLOR_BAR,
	TUI_COLOR_BAR_REF,
};

/* Columns of the site table; the first ten fit 80 columns, the rest appear when
 * the terminal is wider. */
enum tui_column {
	COL_SITE, COL_DIM, COL_TRANSFORM, COL_CX, COL_CW, COL_ALIGN, COL_HEADROOM,
	COL_PREDICTED, COL_MEASURED, COL_DELTA,
	COL_WEIGHT_ONLY, COL_ACT_ONLY, COL_GAP, COL_BEST, COL_TOKENS,
	COL_COUNT
};

/* A snapshot of one site copied under the analysis lock, so drawing never holds it. */
struct tui_row {
	int index;
	char name[32];
	int dim;
	char spec[32];
	int transform;           /* tui_transform_index of the spec */
	enum analysis_state state;
	struct site_result result;
	char error[ERROR_MESSAGE_MAX];
	bool has_reference;
	double reference_db;     /* SQNR of the site without transform: measured, or
				  * predicted when there is no sample */
};

/* Channel profiles of one site: activation RMS (sqrt of the diagonal of Sx) and
 * weight column norms over all the site's layers, before and after a transform. */
struct tui_profile {
	int site;
	int dim;
	char spec[32];           /* the transform of the "after" rows */
	bool has_act;            /* false without calibration statistics */
	bool has_after;          /* false when the transform could not be built */
	char note[160];          /* why a row is missing, or empty */
	float *act_before, *act_after, *weight_before, *weight_after;
};

/* Background evaluation that the table and detail view need beside the analysis's
 * own results: every site without transform (for the gain column and the overview)
 * and every transform of the site open in the detail view. It owns a private
 * analysis that only its thread evaluates, so the engine is never entered twice on
 * one analysis. */
struct tui_compare {
	struct analysis *priv;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	unsigned generation;     /* bumped by every quantizer change */
	/* The none reference of each site, valid when ref_generation matches. */
	struct site_result *reference;
	unsigned *ref_generation;
	bool *ref_valid;
	/* Every transform of one site, for the detail view. */
	int detail_site;         /* -1 when no detail is requested */
	struct site_result detail[TUI_TRANSFORM_COUNT];
	int detail_state[TUI_TRANSFORM_COUNT]; /* 0 pending, 1 done, -1 failed or n/a */
	char detail_error[TUI_TRANSFORM_COUNT][ERROR_MESSAGE_MAX];
	unsigned detail_generation;
	/* Channel profiles of the detail site. A request bumps profile_wanted; the
	 * profile is current when profile_done equals it. */
	struct tui_profile profile;
	unsigned profile_wanted, profile_claimed, profile_done;
};

/* The end-to-end perplexity of the p key: a thread that simulates the current
 * settings as the default export computes them and scores the held-out tokens,
 * beside the full-precision model (scored once and kept). Fields below lock are
 * guarded by it. */
struct tui_perplexity {
	pthread_t thread;
	bool running;            /* the thread exists */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	unsigned requested;      /* bumped by every p */
	unsigned claimed;        /* the request the thread works on or finished */
	bool busy;               /* a run is in progress */
	const char *phase;       /* what the run in progress does, for the status line */
	double fraction;         /* of the current phase */
	struct transform_spec *run_specs; /* settings of the run in progress */
	struct quant_config run_quant;
	int run_kv_bits;
	bool has_fp;
	double fp;               /* perplexity of the full-precision model */
	bool has_result;
	double ppl;              /* perplexity of result_specs and result_quant */
	struct transform_spec *result_specs;
	struct quant_config result_quant;
	int result_kv_bits;
};

/* The export of the E key, on a thread of its own because export_write cannot be
 * cancelled. */
struct tui_export {
	pthread_t thread;
	bool running;            /* the thread exists and is not joined yet */
	pthread_mutex_t lock;
	bool done;               /* the thread has finished; guarded by lock */
	char dir[200];
	bool force;
	int kv_bits;
	const char *calib_path;  /* recorded in the export's provenance, or NULL */
	struct analysis *priv;   /* a copy of the settings when E was confirmed */
	double start;
	int rc;
	struct export_summary summary;
	struct error err;
};

struct tui_undo {
	struct transform_spec *specs;
	struct quant_config quant;
};

#define TUI_DETAIL_PANES 4
#define TUI_UNDO_MAX 64
#define TUI_STATUS_MAX 256

struct tui {
	struct analysis *a;
	const struct tui_options *opt;
	/* KV-cache bits for p and E (0: unquantized). Written by the key thread only, read
	 * by the jobs when they claim a request. */
	int kv_bits;
	bool color;
	bool ascii;
	int rows, cols;
	enum tui_view view;
	enum tui_view previous_view;
	bool quit;

	struct tui_row *table;   /* n_sites snapshots, refreshed every frame */
	int *order;              /* indices into table, filtered and sorted */
	int n_order;
	int selected;            /* position in order */
	int top;                 /* first visible position */
	enum tui_column sort_column;
	bool sort_reverse;
	char filter[64];
	bool editing_filter;
	int detail_pane;         /* 0 factors, 1 transforms, 2 profiles, 3 layers */
	unsigned frame;          /* spinner phase */

	struct tui_compare compare;
	struct tui_perplexity perplexity;
	struct tui_export export;
	struct tui_undo undo[TUI_UNDO_MAX];
	int n_undo;

	enum tui_prompt prompt;
	char prompt_input[200];  /* the file name typed so far */
	char prompt_default[200]; /* the name Enter takes when nothing is typed, or empty */
	char save_path[216];     /* the session file that the replace question is about */
	bool quit_after_save;    /* the save prompt came from quitting */

	pthread_mutex_t status_lock; /* the log sink can run on the worker thread */
	char status[TUI_STATUS_MAX];
	bool status_error;
	unsigned status_frames;  /* frames left before a message fades */
	unsigned status_repeats; /* times the shown message arrived */
};

/* screen.c */
int tui_screen_start(struct tui *t, struct error *err);
void tui_screen_stop(void);
void tui_screen_resize(struct tui *t);
int tui_attr(const struct tui *t, enum tui_color color);
/* Draws a bar of value cells (fractions allowed) at the cursor, width cells wide. */
void tui_draw_bar(const struct tui *t, double value, int width);
/* A sparkline glyph for level 0..7. */
const char *tui_spark(const struct tui *t, int level);

/* status.c */
void tui_status_init(struct tui *t);
void tui_status_set(struct tui *t, bool error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void tui_draw_title(struct tui *t);
void tui_draw_status(struct tui *t);

/* compare.c */
int tui_compare_start(struct tui *t);
void tui_compare_stop(struct tui *t);
void tui_compare_set_quant(struct tui *t, const struct quant_config *qc);
void tui_compare_request_detail(struct tui *t, int site);
int tui_compare_pending(struct tui *t);

/* jobs.c */
void tui_jobs_init(struct tui *t);
/* Stops the perplexity run and waits for an export in progress to finish. */
void tui_jobs_stop(struct tui *t);
/* Reports a finished export on the status line; called once per frame. */
void tui_jobs_poll(struct tui *t);
/* Starts (or restarts) the perplexity of the current settings, the p key. */
void tui_perplexity_request(struct tui *t);
/* Writes the perplexity for the title, such as "PPL 12.2912 (FP 9.3700, +31.2%)",
 * or an empty string before the first result. */
void tui_perplexity_label(struct tui *t, char *buf, size_t size);
/* Writes what the running jobs do, for the left of the status line, separated by " | ". */
void tui_jobs_activity(struct tui *t, char *buf, size_t size);
/* Opens the destination prompt of the E key. */
void tui_export_prompt(struct tui *t);
/* Handles Enter in the destination prompt, with the directory in prompt_input: prompts
 * before replacing an existing path. */
void tui_export_confirm(struct tui *t);
/* Starts the export into prompt_input; force replaces an existing destination. */
void tui_export_start(struct tui *t, bool force);

/* table.c */
void tui_table_refresh(struct tui *t);
void tui_table_draw(struct tui *t);
const char *tui_column_title(enum tui_column c);
int tui_table_worst(const struct tui *t);
void tui_table_select_site(struct tui *t, int site);
int tui_table_visible_rows(const struct tui *t);
/* Columns that fit the terminal's width; they are always the first ones. */
int tui_table_column_count(const struct tui *t);
double tui_db(double ratio);
double tui_row_quality(const struct tui_row *r);

/* detail.c */
void tui_detail_draw(struct tui *t);

/* overview.c */
void tui_overview_draw(struct tui *t);

/* help.c */
void tui_help_draw(struct tui *t);

/* keys.c */
void tui_handle_key(struct tui *t, int key);
/* Acts on a typed non-ASCII character: text for the filter, otherwise no command. */
void tui_handle_text(struct tui *t, wchar_t ch);
void tui_undo_free(struct tui *t);

/* save.c */
void tui_restore_ui(struct tui *t);
/* Opens the file name prompt; with quit_after, a successful save also quits. */
void tui_prompt_save(struct tui *t, bool quit_after);
/* Quits, or prompts first when the session has unsaved changes. */
void tui_request_quit(struct tui *t);
void tui_prompt_key(struct tui *t, int key);
/* Writes the open prompt's line into buf; false when no prompt is open. */
bool tui_prompt_text(const struct tui *t, char *buf, size_t size);

/* filter.c */
void tui_filter_key(struct tui *t, int key);
/* Appends a typed non-ASCII character to the filter being edited. */
void tui_filter_text(struct tui *t, wchar_t ch);
/* Appends ch, encoded in the locale, to the string line (size bytes with the NUL).
 * Returns false, leaving line as it was, when ch is not printable or does not fit. */
bool tui_line_append(char *line, size_t size, wchar_t ch);
/* Removes the last character of line, which may take several bytes. */
void tui_line_erase_last(char *line);
bool tui_filter_match(const struct tui *t, const struct tui_row *row);

#endif
