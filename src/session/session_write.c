/* Writing a session file atomically, one site or journal entry per line. The format
 * is in catscope-session(5). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/jsonfile.h"
#include "session_impl.h"

/* The absolute, normalised form of a path that may not exist yet: realpath of the
 * path, else realpath of its directory followed by the last name. NULL when
 * neither resolves. */
static char *
absolute_path(const char *path)
{
	char resolved[PATH_MAX];
	char *copy, *slash;

	if (realpath(path, resolved) != NULL)
		return alloc_strdup(resolved);
	copy = alloc_strdup(path);
	slash = strrchr(copy, '/');
	if (slash != NULL) {
		*slash = '\0';
		if (realpath(copy[0] != '\0' ? copy : "/", resolved) != NULL) {
			char *out = alloc_bytes(strlen(resolved) + strlen(slash + 1) + 2);

			sprintf(out, "%s/%s", strcmp(resolved, "/") == 0 ? "" : resolved, slash + 1);
			free(copy);
			return out;
		}
	} else if (getcwd(resolved, sizeof(resolved)) != NULL) {
		char *out = alloc_bytes(strlen(resolved) + strlen(path) + 2);

		sprintf(out, "%s/%s", resolved, path);
		free(copy);
		return out;
	}
	free(copy);
	return NULL;
}

/* The path of target relative to the directory dir (both absolute), such as
 * "../../shared/data/stories260K.gguf". */
static char *
relative_path(const char *target, const char *dir)
{
	size_t common = 0, i = 0, ups = 0;
	char *out;

	/* The longest common prefix that ends at a component boundary. */
	while (target[i] != '\0' && target[i] == dir[i]) {
		i++;
		if (target[i] == '/' && (dir[i] == '/' || dir[i] == '\0'))
			common = i;
	}
	if (dir[i] == '\0' && target[i] == '/')
		common = i;
	for (const char *p = dir + common; *p != '\0'; p++)
		ups += *p == '/';
	out = alloc_bytes(3 * ups + strlen(target + common) + 1);
	out[0] = '\0';
	for (size_t k = 0; k < ups; k++)
		strcat(out, "../");
	strcat(out, target + common + 1);
	return out;
}

/* The path to write into a session at session_path: relative to its directory when
 * both resolve, else as given. */
static char *
path_for_file(const char *path, const char *session_path)
{
	char *target = absolute_path(path);
	char *session = absolute_path(session_path);
	char *out;

	if (target == NULL || session == NULL) {
		free(target);
		free(session);
		return alloc_strdup(path);
	}
	*strrchr(session, '/') = '\0';
	out = relative_path(target, session[0] != '\0' ? session : "/");
	free(target);
	free(session);
	return out;
}

static char *
hex64(uint64_t v, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, v);
	return buf;
}

static json_t *
sites_to_json(const struct session_sites *list)
{
	json_t *array = json_array();
	char text[64];

	for (int i = 0; i < list->n; i++) {
		transform_spec_format(&list->specs[i], text, sizeof(text));
		json_array_append_new(array, json_pack("{s:s, s:s}", "site", list->names[i],
						       "transform", text));
	}
	return array;
}

static json_t *
action_to_json(const struct session_action *action)
{
	static const char *const names[] = { "set_transform", "apply_all", "set_quant", "undo" };
	json_t *item = json_pack("{s:s, s:s}", "t", action->time, "action", names[action->kind]);
	char text[128];

	switch (action->kind) {
	case SESSION_SET_TRANSFORM:
		json_object_set_new(item, "site", json_string(action->sites[0]));
		transform_spec_format(&action->spec, text, sizeof(text));
		json_object_set_new(item, "transform", json_string(text));
		break;
	case SESSION_APPLY_ALL: {
		json_t *sites = json_array();

		for (int k = 0; k < action->n_sites; k++)
			json_array_append_new(sites, json_string(action->sites[k]));
		transform_spec_format(&action->spec, text, sizeof(text));
		json_object_set_new(item, "transform", json_string(text));
		json_object_set_new(item, "sites", sites);
		break;
	}
	case SESSION_SET_QUANT:
		quant_config_format(&action->quant, text, sizeof(text));
		json_object_set_new(item, "quant", json_string(text));
		break;
	case SESSION_UNDO:
		break;
	}
	return item;
}

static json_t *
session_to_json(const struct session *s, const char *path)
{
	json_t *root = json_object();
	json_t *model, *journal, *start;
	char hex[17], quant[128];
	char *rel;

	json_object_set_new(root, "format", json_string(SESSION_FORMAT_NAME));
	json_object_set_new(root, "version", json_integer(SESSION_VERSION));

	rel = path_for_file(s->model_path, path);
	model = json_pack("{s:s}", "path", rel);
	json_object_set_new(model, "fingerprint", json_string(hex64(s->model_fingerprint, hex)));
	json_object_set_new(root, "model", model);
	free(rel);
	if (s->has_cache) {
		json_t *calib;

		rel = path_for_file(s->cache_path, path);
		calib = json_pack("{s:s}", "path", rel);
		json_object_set_new(calib, "model_fingerprint",
				    json_string(hex64(s->cache_model_fingerprint, hex)));
		json_object_set_new(calib, "provenance_hash",
				    json_string(hex64(s->cache_provenance_hash, hex)));
		json_object_set_new(root, "calib", calib);
		free(rel);
	} else {
		json_object_set_new(root, "calib", json_null());
	}

	quant_config_format(&s->quant, quant, sizeof(quant));
	json_object_set_new(root, "quant", json_string(quant));
	json_object_set_new(root, "sites", sites_to_json(&s->sites));
	json_object_set_new(root, "ui", json_pack("{s:s, s:s, s:b, s:s, s:s}", "selected",
						  s->ui.selected, "sort", s->ui.sort, "reverse",
						  s->ui.reverse, "filter", s->ui.filter, "view",
						  s->ui.view));

	quant_config_format(&s->start_quant, quant, sizeof(quant));
	start = json_pack("{s:s}", "quant", quant);
	json_object_set_new(start, "sites", sites_to_json(&s->start_sites));
	json_object_set_new(root, "journal_start", start);
	journal = json_array();
	for (int i = 0; i < s->n_actions; i++)
		json_array_append_new(journal, action_to_json(&s->actions[i]));
	json_object_set_new(root, "journal", journal);
	return root;
}

static bool
utf8_path(const char *text)
{
	json_t *value = json_string(text);

	json_decref(value);
	return value != NULL;
}

/* Writes v as JSON with one object key or array element per line. Each array
 * element stays on a single line, so a diff of two sessions shows whole changed
 * sites and journal entries. */
static void
write_json(FILE *out, json_t *v, int depth)
{
	const size_t flags = JSON_PRESERVE_ORDER | JSON_ENCODE_ANY;
	char *text;

	if (json_is_object(v) && json_object_size(v) > 0) {
		const char *key;
		json_t *value;
		size_t left = json_object_size(v);

		fputs("{\n", out);
		json_object_foreach(v, key, value) {
			json_t *name = json_string(key);

			text = json_dumps(name, flags);
			fprintf(out, "%*s%s: ", 2 * (depth + 1), "", text);
			free(text);
			json_decref(name);
			write_json(out, value, depth + 1);
			fputs(--left > 0 ? ",\n" : "\n", out);
		}
		fprintf(out, "%*s}", 2 * depth, "");
	} else if (json_is_array(v) && json_array_size(v) > 0) {
		size_t i;
		json_t *item;

		fputs("[\n", out);
		json_array_foreach(v, i, item) {
			text = json_dumps(item, flags);
			fprintf(out, "%*s%s%s\n", 2 * (depth + 1), "", text,
				i + 1 < json_array_size(v) ? "," : "");
			free(text);
		}
		fprintf(out, "%*s]", 2 * depth, "");
	} else {
		text = json_dumps(v, flags);
		fputs(text, out);
		free(text);
	}
}

/* Fails when path is a non-empty file that is not a catscope session, so that a name
 * typed by mistake never replaces a model, a text or any other file. */
static int
session_check_replaceable(const char *path, struct error *err)
{
	struct stat st;
	json_t *root;
	const char *format;
	bool replaceable;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
		return 0;
	root = jsonfile_load(path, 0, NULL);
	format = json_string_value(json_object_get(root, "format"));
	replaceable = format != NULL && strcmp(format, SESSION_FORMAT_NAME) == 0;
	json_decref(root);
	if (replaceable)
		return 0;
	return error_set(err, "%s: exists and is not a catscope session, so it is not replaced; "
			 "choose another name or remove the file", path);
}

int
session_save(struct session *s, const char *path, struct analysis *a, const struct session_ui *ui,
	     struct error *err)
{
	json_t *root;
	FILE *out;
	char *text;
	size_t length;
	int rc;

	/* The final state: every site, so that the file shows the whole model. */
	pthread_mutex_lock(&a->lock);
	s->quant = a->quant;
	pthread_mutex_unlock(&a->lock);
	session_sites_capture(&s->sites, a, true);
	if (ui != NULL)
		s->ui = *ui;

	if (session_check_replaceable(path, err) != 0)
		return -1;
	/* JSON strings are UTF-8, and jansson rejects anything else. */
	if (!utf8_path(s->model_path) ||
	    (s->cache_path != NULL && !utf8_path(s->cache_path)))
		return error_set(err, "%s: cannot save: the model or cache path is not valid UTF-8",
				 path);
	root = session_to_json(s, path);
	out = open_memstream(&text, &length);
	if (out == NULL) {
		json_decref(root);
		return error_set(err, "%s: cannot format the session: %s", path, strerror(errno));
	}
	write_json(out, root, 0);
	fputc('\n', out);
	fclose(out);
	json_decref(root);
	rc = atomic_write_all(path, text, length, err);
	free(text);
	if (rc != 0)
		return -1;
	if (s->file == NULL || strcmp(s->file, path) != 0) {
		free(s->file);
		s->file = alloc_strdup(path);
	}
	s->unsaved = false;
	return 0;
}
