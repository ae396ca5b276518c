/* Sessions: what a user did in the explorer, saved as a JSON file (catscope-session(5))
 * and replayed in the explorer or without a screen.
 *
 * A session contains the model and cache it was made on (paths and fingerprints), the
 * final state (quantizer and every site's transform), the explorer's position, and
 * the journal: every action in order with its UTC time, starting from the state in
 * journal_start. Replaying applies the final state (session_apply); re-running the
 * journal (session_apply_journal) must reach the same state, and
 * session_state_differs checks that.
 *
 * Typical use: session_load, then session_check against the opened workspace, then
 * session_apply to a new analysis and analysis_compute_all. */
#ifndef CATSCOPE_SESSION_H
#define CATSCOPE_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "catscope/analysis.h"
#include "catscope/calib_cache.h"
#include "catscope/error.h"
#include "catscope/model.h"
#include "catscope/quant.h"
#include "catscope/transform.h"

/* The format version written; files with another version are rejected. */
#define SESSION_VERSION 1
#define SESSION_NAME_MAX 32

enum session_action_kind {
	SESSION_SET_TRANSFORM, /* one site gets a transform */
	SESSION_APPLY_ALL,     /* the sites listed (those shown at the time) get one */
	SESSION_SET_QUANT,     /* the quantizer changes */
	SESSION_UNDO,          /* the state before the latest action not yet undone returns */
};

struct session_action {
	char time[24];                 /* ISO 8601 UTC, such as "2026-12-04T21:01:11Z" */
	enum session_action_kind kind;
	struct transform_spec spec;    /* SET_TRANSFORM, APPLY_ALL */
	int n_sites;                   /* SET_TRANSFORM: 1 */
	char (*sites)[SESSION_NAME_MAX]; /* site names such as "blk.0.ffn_down" */
	struct quant_config quant;     /* SET_QUANT */
};

/* The explorer's position; names, not indices, so a file reads without the code. */
struct session_ui {
	char selected[SESSION_NAME_MAX]; /* site name, or empty */
	char sort[16];                   /* column title as shown, such as "pred" */
	bool reverse;
	char filter[64];
	char view[16];                   /* "table", "detail" or "overview" */
};

/* One state: the quantizer and each site's transform, in analysis site order. */
struct session_state {
	struct quant_config quant;
	int n_sites;
	struct transform_spec *specs;
};

struct session;

/* An empty session for a model (and cache, which may be NULL), with journal_start
 * taken from the analysis as it is now. Paths are stored as given; session_save
 * rewrites them relative to the session file. Caller frees with session_free(). */
struct session *session_new(const char *model_path, const struct model *model,
			    const char *cache_path, const struct calib_cache *cache,
			    struct analysis *a);
void session_free(struct session *s);

/* Reads and checks a session file: syntax, version, types, transform and quantizer
 * strings, site names, and every journal entry (its fields for its action, time and
 * undo count). Errors name the file, the line and column (syntax) or the JSON path of
 * the value (such as "journal[3].quant"). Model-dependent checks wait for
 * session_check and session_apply. Caller frees *out with session_free(). */
int session_load(const char *path, struct session **out, struct error *err);

/* Writes the session atomically to path, with the final state taken from a and the
 * UI position from ui (NULL keeps the stored one). Clears the unsaved flag. An existing
 * non-empty file at path is replaced only if it is a session. */
int session_save(struct session *s, const char *path, struct analysis *a,
		 const struct session_ui *ui, struct error *err);

/* Resolved paths (relative ones are taken from the session file's directory), or
 * NULL for a session without cache. Borrowed; valid until session_free or
 * session_set_paths. */
const char *session_model_path(const struct session *s);
const char *session_cache_path(const struct session *s);
/* The paths as the session file gives them (before resolving), for messages; NULL
 * for a session not loaded from a file, without cache, or after session_set_paths or
 * session_rebind replaced that path. */
const char *session_model_path_written(const struct session *s);
const char *session_cache_path_written(const struct session *s);
/* The file the session was loaded from or last saved to, or NULL. */
const char *session_file(const struct session *s);
uint64_t session_model_fingerprint(const struct session *s);
/* Fingerprint of the model the cache was made for, and the hash of the cache's
 * provenance (session_provenance_hash); false when the session has no cache. */
bool session_cache_fingerprints(const struct session *s, uint64_t *model_fingerprint,
				uint64_t *provenance_hash);
const struct session_ui *session_ui(const struct session *s);
const struct quant_config *session_quant(const struct session *s);
/* Replaces the resolved paths (for --model and --calib overrides); NULL keeps one. */
void session_set_paths(struct session *s, const char *model_path, const char *cache_path);

/* Points the session at another model and cache (after a replay forced past a
 * fingerprint mismatch, or with moved files), so that the next save records them. */
void session_rebind(struct session *s, const char *model_path, const struct model *model,
		    const char *cache_path, const struct calib_cache *cache);

/* Hash of what makes a cache's statistics: model fingerprint, token, window, seed
 * and sample counts, and each text's size and hash (not its name or catscope's
 * version). */
uint64_t session_provenance_hash(const struct calib_provenance *p);

/* Checks that the model and cache (opened from model_path and cache_path) are those
 * the session was saved with. The message names the file that differs and both
 * values, but no remedy, because that depends on the command. A session without
 * cache accepts any cache. */
int session_check(const struct session *s, const struct model *model, const char *model_path,
		  const struct calib_cache *cache, const char *cache_path, struct error *err);

/* Sets the session's final quantizer and transforms on a (every site not listed gets
 * none). Fails, changing nothing, when a site in the final state, journal_start or the
 * journal does not exist in a's model. */
int session_apply(const struct session *s, struct analysis *a, struct error *err);
/* Sets journal_start on a and re-runs the journal, undos included. */
int session_apply_journal(const struct session *s, struct analysis *a, struct error *err);

/* Captures a's quantizer and transforms; free with session_state_free. */
void session_state_capture(struct analysis *a, struct session_state *out);
void session_state_free(struct session_state *st);
/* Returns 0 when a's state equals the session's final state, or -1 with the first
 * difference in err. */
int session_state_differs(const struct session *s, struct analysis *a,
			  struct error *err);

/* Journal recording, for the explorer: each call appends one action stamped with
 * the current time and marks the session unsaved. Site indices are analysis ones. */
void session_record_transform(struct session *s, const struct analysis *a, int site,
			      const struct transform_spec *spec);
void session_record_apply_all(struct session *s, const struct analysis *a, const int *sites,
			      int n_sites, const struct transform_spec *spec);
void session_record_quant(struct session *s, const struct quant_config *qc);
void session_record_undo(struct session *s);
/* True when actions were recorded since the last load or save. */
bool session_unsaved(const struct session *s);
int session_journal_length(const struct session *s);
const struct session_action *session_journal_action(const struct session *s, int i);

/* Writes the "blk.B.kind" name of an analysis site into buf. */
void session_site_name(const struct analysis *a, int site, char buf[SESSION_NAME_MAX]);
/* The analysis index of a site name, or -1 when a's model has no such site. */
int session_site_index(const struct analysis *a, const char *name);

#endif
