/* Session state: accessors, the journal, checking a session against a model and
 * cache, and applying its final state or its journal to an analysis. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <ctype.h>
#include <time.h>

#include "catscope/alloc.h"
#include "catscope/calib.h"
#include "catscope/hash.h"
#include "session_impl.h"

/* The name used in messages for a session not yet saved. */
static const char *
session_label(const struct session *s)
{
	return s->file != NULL ? s->file : "session";
}

void
session_sites_clear(struct session_sites *list)
{
	free(list->names);
	free(list->specs);
	memset(list, 0, sizeof(*list));
}

void
session_sites_add(struct session_sites *list, const char *name, const struct transform_spec *spec)
{
	list->names = alloc_resize(list->names, (size_t)list->n + 1, sizeof(*list->names));
	list->specs = alloc_resize(list->specs, (size_t)list->n + 1, sizeof(*list->specs));
	snprintf(list->names[list->n], SESSION_NAME_MAX, "%s", name);
	list->specs[list->n] = *spec;
	list->n++;
}

void
session_sites_capture(struct session_sites *list, struct analysis *a, bool with_none)
{
	char name[SESSION_NAME_MAX];

	session_sites_clear(list);
	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n_sites; i++) {
		if (!with_none && a->sites[i].spec.kind == TRANSFORM_NONE)
			continue;
		session_site_name(a, i, name);
		session_sites_add(list, name, &a->sites[i].spec);
	}
	pthread_mutex_unlock(&a->lock);
}

bool
session_parse_site_name(const char *name, int *block, enum site_kind *kind)
{
	const char *p = name;
	long value = 0;

	/* Plain decimal digits only, without sign, spaces or leading zeros, and no wrap:
	 * "blk.4294967296.attn_in" must not name block 0. */
	if (strncmp(p, "blk.", 4) != 0)
		return false;
	p += 4;
	if (!isdigit((unsigned char)*p) || (p[0] == '0' && isdigit((unsigned char)p[1])))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		value = value * 10 + (*p - '0');
		if (value > INT_MAX)
			return false;
	}
	if (*p++ != '.')
		return false;
	*block = (int)value;
	for (int k = 0; k < SITE_KIND_COUNT; k++) {
		if (strcmp(p, site_kind_name((enum site_kind)k)) == 0) {
			*kind = (enum site_kind)k;
			return true;
		}
	}
	return false;
}

void
session_site_name(const struct analysis *a, int site, char buf[SESSION_NAME_MAX])
{
	snprintf(buf, SESSION_NAME_MAX, "blk.%d.%s", a->sites[site].block,
		 site_kind_name(a->sites[site].kind));
}

int
session_site_index(const struct analysis *a, const char *name)
{
	int block;
	enum site_kind kind;

	if (!session_parse_site_name(name, &block, &kind))
		return -1;
	for (int i = 0; i < a->n_sites; i++) {
		if (a->sites[i].block == block && a->sites[i].kind == kind)
			return i;
	}
	return -1;
}

struct session *
session_new(const char *model_path, const struct model *model, const char *cache_path,
	    const struct calib_cache *cache, struct analysis *a)
{
	struct session *s = alloc_zeroed(1, sizeof(*s));

	s->model_path = alloc_strdup(model_path);
	s->model_fingerprint = model->fingerprint;
	if (cache != NULL) {
		const struct calib_provenance *p = calib_cache_provenance(cache);

		s->cache_path = alloc_strdup(cache_path);
		s->has_cache = true;
		s->cache_model_fingerprint = p->fingerprint;
		s->cache_provenance_hash = session_provenance_hash(p);
	}
	pthread_mutex_lock(&a->lock);
	s->start_quant = a->quant;
	pthread_mutex_unlock(&a->lock);
	s->quant = s->start_quant;
	session_sites_capture(&s->start_sites, a, false);
	session_sites_capture(&s->sites, a, false);
	snprintf(s->ui.view, sizeof(s->ui.view), "table");
	return s;
}

void
session_action_clear(struct session_action *action)
{
	free(action->sites);
	action->sites = NULL;
	action->n_sites = 0;
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	free(s->file);
	free(s->model_path);
	free(s->cache_path);
	free(s->model_path_written);
	free(s->cache_path_written);
	session_sites_clear(&s->sites);
	session_sites_clear(&s->start_sites);
	for (int i = 0; i < s->n_actions; i++)
		session_action_clear(&s->actions[i]);
	free(s->actions);
	free(s);
}

const char *
session_model_path(const struct session *s)
{
	return s->model_path;
}

const char *
session_cache_path(const struct session *s)
{
	return s->cache_path;
}

const char *
session_model_path_written(const struct session *s)
{
	return s->model_path_written;
}

const char *
session_cache_path_written(const struct session *s)
{
	return s->cache_path_written;
}

const char *
session_file(const struct session *s)
{
	return s->file;
}

uint64_t
session_model_fingerprint(const struct session *s)
{
	return s->model_fingerprint;
}

bool
session_cache_fingerprints(const struct session *s, uint64_t *model_fingerprint,
			   uint64_t *provenance_hash)
{
	if (!s->has_cache)
		return false;
	*model_fingerprint = s->cache_model_fingerprint;
	*provenance_hash = s->cache_provenance_hash;
	return true;
}

const struct session_ui *
session_ui(const struct session *s)
{
	return &s->ui;
}

const struct quant_config *
session_quant(const struct session *s)
{
	return &s->quant;
}

void
session_set_paths(struct session *s, const char *model_path, const char *cache_path)
{
	/* Copy before freeing: the argument may be the stored path itself. */
	if (model_path != NULL) {
		char *copy = alloc_strdup(model_path);

		free(s->model_path);
		s->model_path = copy;
		free(s->model_path_written);
		s->model_path_written = NULL;
	}
	if (cache_path != NULL) {
		char *copy = alloc_strdup(cache_path);

		free(s->cache_path);
		s->cache_path = copy;
		free(s->cache_path_written);
		s->cache_path_written = NULL;
	}
}

void
session_rebind(struct session *s, const char *model_path, const struct model *model,
	       const char *cache_path, const struct calib_cache *cache)
{
	char *cache_copy = cache != NULL ? alloc_strdup(cache_path) : NULL;

	session_set_paths(s, model_path, NULL);
	s->model_fingerprint = model->fingerprint;
	free(s->cache_path);
	s->cache_path = cache_copy;
	free(s->cache_path_written);
	s->cache_path_written = NULL;
	s->has_cache = cache != NULL;
	if (cache != NULL) {
		s->cache_model_fingerprint = calib_cache_provenance(cache)->fingerprint;
		s->cache_provenance_hash = session_provenance_hash(calib_cache_provenance(cache));
	}
}

/* Fixed-width fields are hashed one by one in little-endian-independent form by
 * going through uint64_t values, so the hash does not depend on struct padding. */
static uint64_t
hash_u64(uint64_t h, uint64_t v)
{
	unsigned char bytes[8];

	for (int i = 0; i < 8; i++)
		bytes[i] = (unsigned char)(v >> (8 * i));
	return hash_update(h, bytes, sizeof(bytes));
}

uint64_t
session_provenance_hash(const struct calib_provenance *p)
{
	uint64_t h = HASH_SEED;

	h = hash_u64(h, p->fingerprint);
	h = hash_u64(h, p->n_tokens);
	h = hash_u64(h, (uint64_t)p->ctx);
	h = hash_u64(h, (uint64_t)p->n_windows);
	h = hash_u64(h, p->seed);
	h = hash_u64(h, (uint64_t)p->sample_size);
	h = hash_u64(h, (uint64_t)p->n_texts);
	for (int i = 0; i < p->n_texts; i++) {
		h = hash_u64(h, p->texts[i].size);
		h = hash_u64(h, p->texts[i].hash);
	}
	return h;
}

int
session_check(const struct session *s, const struct model *model, const char *model_path,
	      const struct calib_cache *cache, const char *cache_path, struct error *err)
{
	if (model->fingerprint != s->model_fingerprint)
		return error_set(err, "%s: the session was saved with model fingerprint %016" PRIx64
				 ", but %s has fingerprint %016" PRIx64, session_label(s),
				 s->model_fingerprint, model_path, model->fingerprint);
	if (!s->has_cache || cache == NULL)
		return 0;

	const struct calib_provenance *p = calib_cache_provenance(cache);
	uint64_t provenance = session_provenance_hash(p);

	if (p->fingerprint != s->cache_model_fingerprint)
		return error_set(err, "%s: the calibration cache %s was made for model fingerprint %016"
				 PRIx64 ", but the session's cache was made for %016" PRIx64,
				 session_label(s), cache_path, p->fingerprint, s->cache_model_fingerprint);
	if (provenance != s->cache_provenance_hash)
		return error_set(err, "%s: the calibration cache %s has provenance hash %016" PRIx64
				 ", but the session was saved with a cache of provenance hash %016" PRIx64
				 " (other texts, token count or seed)", session_label(s), cache_path,
				 provenance, s->cache_provenance_hash);
	return 0;
}

void
session_state_capture(struct analysis *a, struct session_state *out)
{
	out->n_sites = a->n_sites;
	out->specs = alloc_array((size_t)a->n_sites, sizeof(*out->specs));
	pthread_mutex_lock(&a->lock);
	out->quant = a->quant;
	for (int i = 0; i < a->n_sites; i++)
		out->specs[i] = a->sites[i].spec;
	pthread_mutex_unlock(&a->lock);
}

void
session_state_free(struct session_state *st)
{
	free(st->specs);
	st->specs = NULL;
	st->n_sites = 0;
}

static bool
quant_equal(const struct quant_config *x, const struct quant_config *y)
{
	char tx[128], ty[128];

	quant_config_format(x, tx, sizeof(tx));
	quant_config_format(y, ty, sizeof(ty));
	return strcmp(tx, ty) == 0;
}

/* Writes a state into st from a quantizer and a site list; list_path names the list
 * in messages ("sites", "journal_start.sites"). */
static int
state_from_sites(const struct session *s, const struct analysis *a,
		 const struct quant_config *quant, const struct session_sites *list,
		 const char *list_path, struct session_state *st, struct error *err)
{
	struct transform_spec none = { .kind = TRANSFORM_NONE };

	st->quant = *quant;
	st->n_sites = a->n_sites;
	st->specs = alloc_array((size_t)a->n_sites, sizeof(*st->specs));
	for (int i = 0; i < a->n_sites; i++)
		st->specs[i] = none;
	for (int i = 0; i < list->n; i++) {
		int site = session_site_index(a, list->names[i]);

		if (site < 0) {
			session_state_free(st);
			return error_set(err, "%s: %s[%d].site: the model has no site %s (it has %d "
					 "blocks)", session_label(s), list_path, i, list->names[i],
					 a->n_sites / SITE_KIND_COUNT);
		}
		st->specs[site] = list->specs[i];
	}
	return 0;
}

/* Sets a to the state, touching only what differs so unchanged sites keep their
 * results. */
static void
state_set(struct analysis *a, const struct session_state *st)
{
	struct quant_config current;

	pthread_mutex_lock(&a->lock);
	current = a->quant;
	pthread_mutex_unlock(&a->lock);
	if (memcmp(&current, &st->quant, sizeof(current)) != 0)
		analysis_set_quant(a, &st->quant);
	for (int i = 0; i < a->n_sites; i++) {
		struct transform_spec spec;

		pthread_mutex_lock(&a->lock);
		spec = a->sites[i].spec;
		pthread_mutex_unlock(&a->lock);
		if (!transform_spec_equal(&spec, &st->specs[i]))
			analysis_set_transform(a, i, &st->specs[i]);
	}
}

/* Returns the analysis index of site k of journal action index, or -1 with the
 * action's JSON path in err when a's model has no such site. */
static int
journal_site_index(const struct session *s, const struct analysis *a, int index, int k,
		   struct error *err)
{
	const struct session_action *action = &s->actions[index];
	int site = session_site_index(a, action->sites[k]);

	if (site >= 0)
		return site;
	if (action->kind == SESSION_SET_TRANSFORM)
		return error_set(err, "%s: journal[%d].site: the model has no site %s",
				 session_label(s), index, action->sites[k]);
	return error_set(err, "%s: journal[%d].sites[%d]: the model has no site %s",
			 session_label(s), index, k, action->sites[k]);
}

/* Checks that every site the journal names exists in a's model, so that a session
 * whose journal could not be re-run is rejected even when only its final state is
 * applied. */
static int
journal_check_sites(const struct session *s, const struct analysis *a, struct error *err)
{
	struct session_state start;

	if (state_from_sites(s, a, &s->start_quant, &s->start_sites, "journal_start.sites", &start,
			     err) != 0)
		return -1;
	session_state_free(&start);
	for (int i = 0; i < s->n_actions; i++) {
		for (int k = 0; k < s->actions[i].n_sites; k++) {
			if (journal_site_index(s, a, i, k, err) < 0)
				return -1;
		}
	}
	return 0;
}

int
session_apply(const struct session *s, struct analysis *a, struct error *err)
{
	struct session_state st;

	if (state_from_sites(s, a, &s->quant, &s->sites, "sites", &st, err) != 0)
		return -1;
	if (journal_check_sites(s, a, err) != 0) {
		session_state_free(&st);
		return -1;
	}
	state_set(a, &st);
	session_state_free(&st);
	return 0;
}

static void
state_copy(struct session_state *dst, const struct session_state *src)
{
	dst->quant = src->quant;
	dst->n_sites = src->n_sites;
	dst->specs = alloc_array((size_t)src->n_sites, sizeof(*dst->specs));
	memcpy(dst->specs, src->specs, (size_t)src->n_sites * sizeof(*dst->specs));
}

/* Applies one journal action to the state, after pushing the old state on the undo
 * stack the way the explorer does. */
static int
journal_step(const struct session *s, const struct analysis *a, int index,
	     struct session_state *st, struct session_state **stack, int *depth,
	     struct error *err)
{
	const struct session_action *action = &s->actions[index];
	int *sites;

	if (action->kind == SESSION_UNDO) {
		if (*depth == 0)
			return error_set(err, "%s: journal[%d]: undo with nothing left to undo",
					 session_label(s), index);
		session_state_free(st);
		*st = (*stack)[--*depth];
		return 0;
	}
	/* Resolve every site first, so a bad name changes nothing. */
	sites = alloc_array(action->n_sites > 0 ? (size_t)action->n_sites : 1, sizeof(*sites));
	for (int k = 0; k < action->n_sites; k++) {
		sites[k] = journal_site_index(s, a, index, k, err);
		if (sites[k] < 0) {
			free(sites);
			return -1;
		}
	}
	*stack = alloc_resize(*stack, (size_t)*depth + 1, sizeof(**stack));
	state_copy(&(*stack)[(*depth)++], st);
	if (action->kind == SESSION_SET_QUANT)
		st->quant = action->quant;
	for (int k = 0; k < action->n_sites; k++)
		st->specs[sites[k]] = action->spec;
	free(sites);
	return 0;
}

int
session_apply_journal(const struct session *s, struct analysis *a, struct error *err)
{
	struct session_state st;
	struct session_state *stack = NULL;
	int depth = 0;
	int rc = 0;

	if (state_from_sites(s, a, &s->start_quant, &s->start_sites, "journal_start.sites", &st,
			     err) != 0)
		return -1;
	for (int i = 0; i < s->n_actions && rc == 0; i++)
		rc = journal_step(s, a, i, &st, &stack, &depth, err);
	if (rc == 0)
		state_set(a, &st);
	session_state_free(&st);
	for (int i = 0; i < depth; i++)
		session_state_free(&stack[i]);
	free(stack);
	return rc;
}

int
session_state_differs(const struct session *s, struct analysis *a, struct error *err)
{
	struct session_state want, have;
	char text[128], name[SESSION_NAME_MAX];
	int rc = 0;

	if (state_from_sites(s, a, &s->quant, &s->sites, "sites", &want, err) != 0)
		return -1;
	session_state_capture(a, &have);
	if (!quant_equal(&want.quant, &have.quant)) {
		char other[128];

		quant_config_format(&want.quant, text, sizeof(text));
		quant_config_format(&have.quant, other, sizeof(other));
		rc = error_set(err, "%s: quantizer %s in the final state, %s after the journal",
			       session_label(s), text, other);
	}
	for (int i = 0; i < a->n_sites && rc == 0; i++) {
		if (!transform_spec_equal(&want.specs[i], &have.specs[i])) {
			char other[64];

			session_site_name(a, i, name);
			transform_spec_format(&want.specs[i], text, sizeof(text));
			transform_spec_format(&have.specs[i], other, sizeof(other));
			rc = error_set(err, "%s: %s has transform %s in the final state, %s after the "
				       "journal", session_label(s), name, text, other);
		}
	}
	session_state_free(&want);
	session_state_free(&have);
	return rc;
}

void
session_append_action(struct session *s, const struct session_action *action)
{
	if (s->n_actions == s->cap_actions) {
		s->cap_actions = s->cap_actions > 0 ? 2 * s->cap_actions : 16;
		s->actions = alloc_resize(s->actions, (size_t)s->cap_actions, sizeof(*s->actions));
	}
	s->actions[s->n_actions++] = *action;
}

/* Starts an action stamped with the current UTC time. */
static void
action_begin(struct session_action *action, enum session_action_kind kind)
{
	time_t now = time(NULL);
	struct tm tm;

	memset(action, 0, sizeof(*action));
	action->kind = kind;
	gmtime_r(&now, &tm);
	strftime(action->time, sizeof(action->time), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
session_record_transform(struct session *s, const struct analysis *a, int site,
			 const struct transform_spec *spec)
{
	struct session_action action;

	action_begin(&action, SESSION_SET_TRANSFORM);
	action.spec = *spec;
	action.n_sites = 1;
	action.sites = alloc_array(1, sizeof(*action.sites));
	session_site_name(a, site, action.sites[0]);
	session_append_action(s, &action);
	s->unsaved = true;
}

void
session_record_apply_all(struct session *s, const struct analysis *a, const int *sites,
			 int n_sites, const struct transform_spec *spec)
{
	struct session_action action;

	action_begin(&action, SESSION_APPLY_ALL);
	action.spec = *spec;
	action.n_sites = n_sites;
	action.sites = alloc_array(n_sites > 0 ? (size_t)n_sites : 1, sizeof(*action.sites));
	for (int k = 0; k < n_sites; k++)
		session_site_name(a, sites[k], action.sites[k]);
	session_append_action(s, &action);
	s->unsaved = true;
}

void
session_record_quant(struct session *s, const struct quant_config *qc)
{
	struct session_action action;

	action_begin(&action, SESSION_SET_QUANT);
	action.quant = *qc;
	session_append_action(s, &action);
	s->unsaved = true;
}

void
session_record_undo(struct session *s)
{
	struct session_action action;

	action_begin(&action, SESSION_UNDO);
	session_append_action(s, &action);
	s->unsaved = true;
}

bool
session_unsaved(const struct session *s)
{
	return s->unsaved;
}

int
session_journal_length(const struct session *s)
{
	return s->n_actions;
}

const struct session_action *
session_journal_action(const struct session *s, int i)
{
	return i >= 0 && i < s->n_actions ? &s->actions[i] : NULL;
}
