/* Internal to the session part: the session struct and helpers shared by the state
 * code (session.c) and the file code (session_read.c, session_write.c). */
#ifndef CATSCOPE_SESSION_IMPL_H
#define CATSCOPE_SESSION_IMPL_H

#include "catscope/session.h"

/* The value of the "format" field. */
#define SESSION_FORMAT_NAME "catscope-session"

/* Transforms of some sites by name, in file order (so an error can give the index). */
struct session_sites {
	int n;
	char (*names)[SESSION_NAME_MAX];
	struct transform_spec *specs;
};

struct session {
	char *file;                   /* loaded from or last saved to; NULL before */
	char *model_path;             /* usable from the working directory */
	char *cache_path;             /* NULL without cache */
	/* The paths as the file gives them, for messages, or NULL once replaced. */
	char *model_path_written;
	char *cache_path_written;
	uint64_t model_fingerprint;
	bool has_cache;
	uint64_t cache_model_fingerprint;
	uint64_t cache_provenance_hash;

	struct quant_config quant;    /* the final state */
	struct session_sites sites;
	struct session_ui ui;

	struct quant_config start_quant; /* where the journal starts */
	struct session_sites start_sites;
	int n_actions, cap_actions;
	struct session_action *actions;
	bool unsaved;
};

void session_sites_clear(struct session_sites *list);
void session_sites_add(struct session_sites *list, const char *name,
		       const struct transform_spec *spec);
/* Fills list with the sites of a whose transform is not none (all of them with
 * with_none set). */
void session_sites_capture(struct session_sites *list, struct analysis *a, bool with_none);
/* Parses "blk.B.KIND"; false for anything else. */
bool session_parse_site_name(const char *name, int *block, enum site_kind *kind);
void session_action_clear(struct session_action *action);
/* Appends an action (taking ownership of its sites array). */
void session_append_action(struct session *s, const struct session_action *action);

#endif
