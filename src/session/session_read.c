/* Reading a session file: parsing with jansson and checking every field, with
 * errors that name the file and the JSON path. The format is in catscope-session(5). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "catscope/alloc.h"
#include "session_impl.h"


/* The file name and error buffer that failing checks format "FILE: JSON.PATH: problem" into. */
struct loader {
	const char *file;
	struct error *err;
};

static int
load_fail(const struct loader *ld, const char *json_path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
load_fail(const struct loader *ld, const char *json_path, const char *fmt, ...)
{
	char problem[ERROR_MESSAGE_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	return error_set(ld->err, "%s: %s: %s", ld->file, json_path, problem);
}

static const char *
json_type_label(const json_t *value)
{
	switch (json_typeof(value)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

/* Checks that value (found at json_path) exists and has the type. Callers check
 * optional fields for NULL first. */
static int
expect_type(const struct loader *ld, const json_t *value, const char *json_path, json_type type,
	    const char *expected)
{
	if (value == NULL)
		return load_fail(ld, json_path, "missing; expected %s", expected);
	if (json_typeof(value) != type && !(type == JSON_TRUE && json_is_boolean(value)))
		return load_fail(ld, json_path, "expected %s, found %s", expected,
				 json_type_label(value));
	return 0;
}

static int
get_string(const struct loader *ld, const json_t *object, const char *key, const char *json_path,
	   const char **out)
{
	const json_t *value = json_object_get(object, key);

	if (expect_type(ld, value, json_path, JSON_STRING, "a string") != 0)
		return -1;
	*out = json_string_value(value);
	return 0;
}

/* Rejects keys outside the list, so that a misspelt field does not pass unnoticed. */
static int
check_keys(const struct loader *ld, const json_t *object, const char *json_path,
	   const char *const *allowed)
{
	const char *key;
	const json_t *value;

	json_object_foreach((json_t *)object, key, value) {
		bool known = false;

		for (int i = 0; allowed[i] != NULL; i++)
			known = known || strcmp(key, allowed[i]) == 0;
		if (!known)
			return load_fail(ld, json_path[0] != '\0' ? json_path : key, "unknown field '%s'",
					 key);
	}
	return 0;
}

static int
parse_hex64(const struct loader *ld, const json_t *object, const char *key, const char *json_path,
	    uint64_t *out)
{
	const char *text;
	char *end;

	if (get_string(ld, object, key, json_path, &text) != 0)
		return -1;
	errno = 0;
	*out = strtoull(text, &end, 16);
	if (strlen(text) != 16 || *end != '\0' || errno != 0)
		return load_fail(ld, json_path, "'%s' is not 16 hexadecimal digits", text);
	return 0;
}

/* A relative path in the file is taken from the session file's directory. */
static char *
resolve_path(const char *session_file, const char *path)
{
	const char *slash = strrchr(session_file, '/');
	char *out;
	size_t dir_len;

	if (path[0] == '/' || slash == NULL)
		return alloc_strdup(path);
	dir_len = (size_t)(slash - session_file);
	out = alloc_bytes(dir_len + strlen(path) + 2);
	memcpy(out, session_file, dir_len);
	out[dir_len] = '/';
	strcpy(out + dir_len + 1, path);
	return out;
}

static int
parse_transform(const struct loader *ld, const json_t *object, const char *json_path,
		struct transform_spec *spec)
{
	const char *text;
	struct error perr;

	if (get_string(ld, object, "transform", json_path, &text) != 0)
		return -1;
	if (transform_spec_parse(text, spec, &perr) != 0)
		return load_fail(ld, json_path, "%s", perr.message);
	return 0;
}

static int
parse_quant(const struct loader *ld, const json_t *object, const char *json_path,
	    struct quant_config *qc)
{
	const char *text;
	struct error perr;

	if (get_string(ld, object, "quant", json_path, &text) != 0)
		return -1;
	quant_config_default(qc);
	if (quant_config_parse(text, qc, &perr) != 0 || quant_params_check(&qc->weight, &perr) != 0 ||
	    quant_params_check(&qc->act, &perr) != 0)
		return load_fail(ld, json_path, "%s", perr.message);
	return 0;
}

static int
parse_site_name(const struct loader *ld, const json_t *value, const char *json_path,
		char name[SESSION_NAME_MAX])
{
	int block;
	enum site_kind kind;

	if (expect_type(ld, value, json_path, JSON_STRING, "a site name such as blk.0.ffn_down") != 0)
		return -1;
	if (strlen(json_string_value(value)) >= SESSION_NAME_MAX ||
	    !session_parse_site_name(json_string_value(value), &block, &kind))
		return load_fail(ld, json_path, "'%s' is not a site name; expected blk.B.KIND with "
				 "KIND attn_in, attn_out, ffn_in or ffn_down", json_string_value(value));
	snprintf(name, SESSION_NAME_MAX, "%s", json_string_value(value));
	return 0;
}

/* Reads a list such as "sites": [{"site": "blk.0.ffn_down", "transform": "cat"}]. */
static int
parse_sites(const struct loader *ld, const json_t *array, const char *json_path,
	    struct session_sites *list)
{
	static const char *const keys[] = { "site", "transform", NULL };
	char path[128], name[SESSION_NAME_MAX];
	size_t i;
	const json_t *item;

	if (expect_type(ld, array, json_path, JSON_ARRAY, "an array of sites") != 0)
		return -1;
	json_array_foreach((json_t *)array, i, item) {
		struct transform_spec spec;

		snprintf(path, sizeof(path), "%s[%zu]", json_path, i);
		if (expect_type(ld, item, path, JSON_OBJECT, "an object with site and transform") != 0 ||
		    check_keys(ld, item, path, keys) != 0)
			return -1;
		snprintf(path, sizeof(path), "%s[%zu].site", json_path, i);
		if (parse_site_name(ld, json_object_get(item, "site"), path, name) != 0)
			return -1;
		for (int k = 0; k < list->n; k++) {
			if (strcmp(list->names[k], name) == 0)
				return load_fail(ld, path, "%s is listed twice (also at %s[%d])", name,
						 json_path, k);
		}
		snprintf(path, sizeof(path), "%s[%zu].transform", json_path, i);
		if (parse_transform(ld, item, path, &spec) != 0)
			return -1;
		session_sites_add(list, name, &spec);
	}
	return 0;
}

static int
parse_model(const struct loader *ld, const json_t *root, struct session *s)
{
	static const char *const keys[] = { "path", "fingerprint", NULL };
	const json_t *model = json_object_get(root, "model");
	const char *path;

	if (expect_type(ld, model, "model", JSON_OBJECT, "an object with path and fingerprint") != 0 ||
	    check_keys(ld, model, "model", keys) != 0 ||
	    get_string(ld, model, "path", "model.path", &path) != 0 ||
	    parse_hex64(ld, model, "fingerprint", "model.fingerprint", &s->model_fingerprint) != 0)
		return -1;
	s->model_path = resolve_path(ld->file, path);
	s->model_path_written = alloc_strdup(path);
	return 0;
}

static int
parse_calib(const struct loader *ld, const json_t *root, struct session *s)
{
	static const char *const keys[] = { "path", "model_fingerprint", "provenance_hash", NULL };
	const json_t *calib = json_object_get(root, "calib");
	const char *path;

	if (calib == NULL || json_is_null(calib))
		return 0;
	if (expect_type(ld, calib, "calib", JSON_OBJECT, "an object or null") != 0 ||
	    check_keys(ld, calib, "calib", keys) != 0 ||
	    get_string(ld, calib, "path", "calib.path", &path) != 0 ||
	    parse_hex64(ld, calib, "model_fingerprint", "calib.model_fingerprint",
			&s->cache_model_fingerprint) != 0 ||
	    parse_hex64(ld, calib, "provenance_hash", "calib.provenance_hash",
			&s->cache_provenance_hash) != 0)
		return -1;
	s->has_cache = true;
	s->cache_path = resolve_path(ld->file, path);
	s->cache_path_written = alloc_strdup(path);
	return 0;
}

static int
parse_ui_string(const struct loader *ld, const json_t *ui, const char *key, char *out, size_t size)
{
	char path[64];
	const char *text;

	snprintf(path, sizeof(path), "ui.%s", key);
	if (json_object_get(ui, key) == NULL)
		return 0;
	if (get_string(ld, ui, key, path, &text) != 0)
		return -1;
	if (strlen(text) >= size)
		return load_fail(ld, path, "longer than %zu characters", size - 1);
	snprintf(out, size, "%s", text);
	return 0;
}

static int
parse_ui(const struct loader *ld, const json_t *root, struct session *s)
{
	static const char *const keys[] = { "selected", "sort", "reverse", "filter", "view", NULL };
	static const char *const views[] = { "table", "detail", "overview" };
	const json_t *ui = json_object_get(root, "ui");
	const json_t *reverse;
	bool known = false;

	snprintf(s->ui.view, sizeof(s->ui.view), "table");
	if (ui == NULL)
		return 0;
	if (expect_type(ld, ui, "ui", JSON_OBJECT, "an object") != 0 || check_keys(ld, ui, "ui", keys) != 0 ||
	    parse_ui_string(ld, ui, "selected", s->ui.selected, sizeof(s->ui.selected)) != 0 ||
	    parse_ui_string(ld, ui, "sort", s->ui.sort, sizeof(s->ui.sort)) != 0 ||
	    parse_ui_string(ld, ui, "filter", s->ui.filter, sizeof(s->ui.filter)) != 0 ||
	    parse_ui_string(ld, ui, "view", s->ui.view, sizeof(s->ui.view)) != 0)
		return -1;
	reverse = json_object_get(ui, "reverse");
	if (reverse != NULL) {
		if (expect_type(ld, reverse, "ui.reverse", JSON_TRUE, "true or false") != 0)
			return -1;
		s->ui.reverse = json_is_true(reverse);
	}
	for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++)
		known = known || strcmp(s->ui.view, views[i]) == 0;
	if (!known)
		return load_fail(ld, "ui.view", "unknown view '%s'; expected table, detail or overview",
				 s->ui.view);
	return 0;
}

/* Checks "YYYY-MM-DDTHH:MM:SSZ", the form the explorer writes, with each field in
 * its range (60 seconds for a leap second). Days are not checked against the month. */
static bool
is_utc_time(const char *text)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
	int year, month, day, hour, minute, second;

	if (strlen(text) != sizeof(pattern) - 1)
		return false;
	for (size_t i = 0; pattern[i] != '\0'; i++) {
		bool digit = text[i] >= '0' && text[i] <= '9';

		if (pattern[i] == 'd' ? !digit : text[i] != pattern[i])
			return false;
	}
	if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2dZ", &year, &month, &day, &hour, &minute,
		   &second) != 6)
		return false;
	return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 &&
	       second <= 60;
}

/* Rejects a field that belongs to another kind of action, such as a quant in an
 * undo, so that a hand edit that changed the action is not half applied. */
static int
check_action_fields(const struct loader *ld, const json_t *item, size_t index, const char *kind,
		    const char *const *fields, const char *field_list)
{
	const char *key;
	const json_t *value;
	char path[96];

	json_object_foreach((json_t *)item, key, value) {
		bool allowed = strcmp(key, "t") == 0 || strcmp(key, "action") == 0;

		for (int i = 0; fields[i] != NULL; i++)
			allowed = allowed || strcmp(key, fields[i]) == 0;
		if (allowed)
			continue;
		snprintf(path, sizeof(path), "journal[%zu].%s", index, key);
		return load_fail(ld, path, "'%s' is not a field of %s actions; they take %s", key,
				 kind, field_list);
	}
	return 0;
}

static int
parse_action(const struct loader *ld, const json_t *item, size_t index,
	     struct session_action *action)
{
	static const char *const keys[] = { "t", "action", "site", "sites", "transform", "quant", NULL };
	static const char *const transform_fields[] = { "site", "transform", NULL };
	static const char *const apply_all_fields[] = { "sites", "transform", NULL };
	static const char *const quant_fields[] = { "quant", NULL };
	static const char *const undo_fields[] = { NULL };
	char path[96];
	const char *time_text, *kind;

	memset(action, 0, sizeof(*action));
	snprintf(path, sizeof(path), "journal[%zu]", index);
	if (expect_type(ld, item, path, JSON_OBJECT, "an object") != 0 || check_keys(ld, item, path, keys) != 0)
		return -1;
	snprintf(path, sizeof(path), "journal[%zu].t", index);
	if (get_string(ld, item, "t", path, &time_text) != 0)
		return -1;
	if (strlen(time_text) >= sizeof(action->time) || !is_utc_time(time_text))
		return load_fail(ld, path, "'%.40s' is not an ISO 8601 UTC time such as "
				 "2026-12-04T21:10:00Z", time_text);
	snprintf(action->time, sizeof(action->time), "%s", time_text);
	snprintf(path, sizeof(path), "journal[%zu].action", index);
	if (get_string(ld, item, "action", path, &kind) != 0)
		return -1;

	if (strcmp(kind, "set_transform") == 0) {
		action->kind = SESSION_SET_TRANSFORM;
		if (check_action_fields(ld, item, index, kind, transform_fields,
					"t, action, site and transform") != 0)
			return -1;
		action->n_sites = 1;
		action->sites = alloc_array(1, sizeof(*action->sites));
		snprintf(path, sizeof(path), "journal[%zu].site", index);
		if (parse_site_name(ld, json_object_get(item, "site"), path, action->sites[0]) != 0)
			return -1;
	} else if (strcmp(kind, "apply_all") == 0) {
		const json_t *sites = json_object_get(item, "sites");
		const json_t *name;
		size_t k;

		action->kind = SESSION_APPLY_ALL;
		if (check_action_fields(ld, item, index, kind, apply_all_fields,
					"t, action, sites and transform") != 0)
			return -1;
		snprintf(path, sizeof(path), "journal[%zu].sites", index);
		if (expect_type(ld, sites, path, JSON_ARRAY, "an array of site names") != 0)
			return -1;
		action->sites = alloc_array(json_array_size(sites) + 1, sizeof(*action->sites));
		json_array_foreach((json_t *)sites, k, name) {
			snprintf(path, sizeof(path), "journal[%zu].sites[%zu]", index, k);
			if (parse_site_name(ld, name, path, action->sites[k]) != 0)
				return -1;
			action->n_sites++;
		}
	} else if (strcmp(kind, "set_quant") == 0) {
		action->kind = SESSION_SET_QUANT;
		if (check_action_fields(ld, item, index, kind, quant_fields, "t, action and quant") != 0)
			return -1;
		snprintf(path, sizeof(path), "journal[%zu].quant", index);
		return parse_quant(ld, item, path, &action->quant);
	} else if (strcmp(kind, "undo") == 0) {
		action->kind = SESSION_UNDO;
		return check_action_fields(ld, item, index, kind, undo_fields, "t and action");
	} else {
		return load_fail(ld, path, "unknown action '%s'; expected set_transform, apply_all, "
				 "set_quant or undo", kind);
	}
	snprintf(path, sizeof(path), "journal[%zu].transform", index);
	return parse_transform(ld, item, path, &action->spec);
}

static int
parse_journal(const struct loader *ld, const json_t *root, struct session *s)
{
	static const char *const start_keys[] = { "quant", "sites", NULL };
	const json_t *start = json_object_get(root, "journal_start");
	const json_t *journal = json_object_get(root, "journal");
	const json_t *item;
	size_t i;
	long undo_depth = 0;

	/* Without journal_start the journal starts from the default quantizer and no
	 * transforms, as the explorer does without options. */
	quant_config_default(&s->start_quant);
	if (start != NULL) {
		if (expect_type(ld, start, "journal_start", JSON_OBJECT, "an object") != 0 ||
		    check_keys(ld, start, "journal_start", start_keys) != 0 ||
		    parse_quant(ld, start, "journal_start.quant", &s->start_quant) != 0)
			return -1;
		if (json_object_get(start, "sites") != NULL &&
		    parse_sites(ld, json_object_get(start, "sites"), "journal_start.sites",
				&s->start_sites) != 0)
			return -1;
	}
	if (journal == NULL)
		return 0;
	if (expect_type(ld, journal, "journal", JSON_ARRAY, "an array of actions") != 0)
		return -1;
	json_array_foreach((json_t *)journal, i, item) {
		struct session_action action;
		char path[64];

		if (parse_action(ld, item, i, &action) != 0) {
			session_action_clear(&action);
			return -1;
		}
		session_append_action(s, &action);
		/* Every undo needs an earlier action not yet undone. That does not depend on
		 * the model, so it is checked on load and not only by --from-journal. */
		undo_depth += action.kind == SESSION_UNDO ? -1 : 1;
		snprintf(path, sizeof(path), "journal[%zu]", i);
		if (undo_depth < 0)
			return load_fail(ld, path, "undo with nothing left to undo");
	}
	return 0;
}

static int
parse_root(const struct loader *ld, const json_t *root, struct session *s)
{
	static const char *const keys[] = { "format", "version", "model", "calib", "quant", "sites",
					    "ui", "journal_start", "journal", NULL };
	const json_t *version;
	const char *format;

	if (!json_is_object(root))
		return load_fail(ld, "(top level)", "expected an object, found %s", json_type_label(root));
	if (get_string(ld, root, "format", "format", &format) != 0)
		return -1;
	if (strcmp(format, SESSION_FORMAT_NAME) != 0)
		return load_fail(ld, "format", "'%s' is not a catscope session; expected \"%s\"", format,
				 SESSION_FORMAT_NAME);
	version = json_object_get(root, "version");
	if (expect_type(ld, version, "version", JSON_INTEGER, "an integer") != 0)
		return -1;
	if (json_integer_value(version) != SESSION_VERSION)
		return load_fail(ld, "version", "version %" JSON_INTEGER_FORMAT " is not supported; this "
				 "catscope reads version %d", json_integer_value(version),
				 SESSION_VERSION);
	if (check_keys(ld, root, "", keys) != 0 || parse_model(ld, root, s) != 0 ||
	    parse_calib(ld, root, s) != 0 || parse_quant(ld, root, "quant", &s->quant) != 0 ||
	    parse_sites(ld, json_object_get(root, "sites"), "sites", &s->sites) != 0 ||
	    parse_ui(ld, root, s) != 0)
		return -1;
	return parse_journal(ld, root, s);
}

int
session_load(const char *path, struct session **out, struct error *err)
{
	struct loader ld = { .file = path, .err = err };
	json_error_t jerr;
	struct stat st;
	json_t *root;
	struct session *s;

	*out = NULL;
	/* jansson reads a directory as an empty file, which would read as a syntax error. */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return error_set(err, "%s: cannot read the session: it is a directory", path);
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		/* jansson reports a file it cannot open with line -1. */
		if (jerr.line < 0)
			return error_set(err, "%s: cannot read the session: %s", path, strerror(errno));
		return error_set(err, "%s:%d:%d: invalid JSON: %s", path, jerr.line, jerr.column,
				 jerr.text);
	}
	s = alloc_zeroed(1, sizeof(*s));
	if (parse_root(&ld, root, s) != 0) {
		json_decref(root);
		session_free(s);
		return -1;
	}
	json_decref(root);
	s->file = alloc_strdup(path);
	*out = s;
	return 0;
}
