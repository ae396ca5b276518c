/* Tests of sessions on the real stories260K model, without calibration. Saving and
 * loading keep the state, and the journal re-runs to the final state with undos.
 * Paths are stored relative to the session file. Every kind of bad file is rejected
 * with its file name and JSON path. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/session.h"
#include "catscope/testutil.h"
#include "catscope/workspace.h"

struct fixture {
	struct workspace ws;
	char dir[4096];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct error err;

	if (workspace_open(&f->ws, testutil_data_path("stories260K.gguf"), NULL, &err) != 0) {
		fprintf(stderr, "cannot open the model: %s\n", err.message);
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "%s", testutil_scratch_dir());
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char command[4200];

	workspace_close(&f->ws);
	snprintf(command, sizeof(command), "rm -rf '%s'", f->dir);
	if (system(command) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f);
	return 0;
}

static void
parse_spec(const char *text, struct transform_spec *spec)
{
	struct error err;

	assert_int_equal(transform_spec_parse(text, spec, &err), 0);
}

/* Sets a transform on a and records it, as the explorer does. */
static void
set_and_record(struct session *s, struct analysis *a, const char *site, const char *spec_text)
{
	struct transform_spec spec;
	int index = session_site_index(a, site);

	assert_true(index >= 0);
	parse_spec(spec_text, &spec);
	analysis_set_transform(a, index, &spec);
	session_record_transform(s, a, index, &spec);
}

static void
test_session_save_load_round_trip(void **state)
{
	struct fixture *f = *state;
	struct analysis *a = workspace_new_analysis(&f->ws);
	struct analysis *b = workspace_new_analysis(&f->ws);
	struct session *s, *loaded;
	struct session_ui ui = { 0 };
	struct quant_config qc;
	struct error err;
	char path[4200], text[128];

	s = session_new(testutil_data_path("stories260K.gguf"), f->ws.model, NULL, NULL, a);
	set_and_record(s, a, "blk.0.ffn_down", "cat");
	set_and_record(s, a, "blk.3.attn_in", "hadamard:16");
	assert_int_equal(quant_config_parse("w3:asym,a8,gptq", &qc, &err), 0);
	analysis_set_quant(a, &qc);
	session_record_quant(s, &qc);
	assert_true(session_unsaved(s));

	snprintf(path, sizeof(path), "%s/round.json", f->dir);
	snprintf(ui.selected, sizeof(ui.selected), "blk.3.attn_in");
	snprintf(ui.sort, sizeof(ui.sort), "pred");
	ui.reverse = true;
	snprintf(ui.filter, sizeof(ui.filter), "attn");
	snprintf(ui.view, sizeof(ui.view), "detail");
	assert_int_equal(session_save(s, path, a, &ui, &err), 0);
	assert_false(session_unsaved(s));
	assert_int_equal(session_load(path, &loaded, &err), 0);

	assert_int_equal(session_model_fingerprint(loaded), f->ws.model->fingerprint);
	assert_int_equal(session_journal_length(loaded), 3);
	assert_int_equal(session_journal_action(loaded, 1)->kind, SESSION_SET_TRANSFORM);
	assert_string_equal(session_journal_action(loaded, 1)->sites[0], "blk.3.attn_in");
	assert_int_equal(session_journal_action(loaded, 2)->kind, SESSION_SET_QUANT);
	assert_string_equal(session_ui(loaded)->selected, "blk.3.attn_in");
	assert_string_equal(session_ui(loaded)->sort, "pred");
	assert_true(session_ui(loaded)->reverse);
	assert_string_equal(session_ui(loaded)->filter, "attn");
	assert_string_equal(session_ui(loaded)->view, "detail");
	quant_config_format(session_quant(loaded), text, sizeof(text));
	assert_string_equal(text, "w3:asym,a8,gptq,damp=0.01");
	assert_int_equal(session_apply(loaded, b, &err), 0);
	assert_int_equal(session_state_differs(loaded, a, &err), 0);
	assert_int_equal(session_state_differs(loaded, b, &err), 0);

	session_free(loaded);
	session_free(s);
	analysis_free(a);
	analysis_free(b);
}

static void
test_session_model_path_relative(void **state)
{
	struct fixture *f = *state;
	struct analysis *a = workspace_new_analysis(&f->ws);
	struct session *s, *loaded;
	struct error err;
	char path[4200], line[4096], want[PATH_MAX], got[PATH_MAX];
	FILE *in;
	bool relative = false;

	s = session_new(testutil_data_path("stories260K.gguf"), f->ws.model, NULL, NULL, a);
	snprintf(path, sizeof(path), "%s/sub.json", f->dir);
	assert_int_equal(session_save(s, path, a, NULL, &err), 0);
	in = fopen(path, "r");
	assert_non_null(in);
	while (fgets(line, sizeof(line), in) != NULL) {
		if (strstr(line, "\"path\": \"../") != NULL)
			relative = true;
	}
	fclose(in);
	assert_true(relative);

	/* Loaded from anywhere, the relative path leads back to the same model file. */
	assert_int_equal(session_load(path, &loaded, &err), 0);
	assert_non_null(realpath(testutil_data_path("stories260K.gguf"), want));
	assert_non_null(realpath(session_model_path(loaded), got));
	assert_string_equal(want, got);
	session_free(loaded);
	session_free(s);
	analysis_free(a);
}

static void
write_text(const char *path, const char *text)
{
	FILE *out = fopen(path, "w");

	assert_non_null(out);
	fputs(text, out);
	assert_int_equal(fclose(out), 0);
}

static char *
read_text(const char *path)
{
	static char buffer[8192];
	FILE *in = fopen(path, "r");
	size_t n;

	assert_non_null(in);
	n = fread(buffer, 1, sizeof(buffer) - 1, in);
	buffer[n] = '\0';
	fclose(in);
	return buffer;
}

/* Saving replaces an earlier session or an empty file but no other file, because a
 * name typed by mistake must not destroy a text, a model or a config. */
static void
test_session_save_keeps_other_files(void **state)
{
	static const char *const kept[] = {
		"Once upon a time\n",
		"{\"format\": \"catscope-spm-vocab\"}\n",
		"{\"format\": \"catscope-session\"",
	};
	struct fixture *f = *state;
	struct analysis *a = workspace_new_analysis(&f->ws);
	struct session *s;
	struct error err;
	char path[4200];

	s = session_new(testutil_data_path("stories260K.gguf"), f->ws.model, NULL, NULL, a);
	snprintf(path, sizeof(path), "%s/kept.txt", f->dir);
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		write_text(path, kept[i]);
		assert_int_equal(session_save(s, path, a, NULL, &err), -1);
		assert_non_null(strstr(err.message, "exists and is not a catscope session"));
		assert_non_null(strstr(err.message, path));
		assert_string_equal(read_text(path), kept[i]);
	}

	snprintf(path, sizeof(path), "%s/empty.json", f->dir);
	write_text(path, "");
	assert_int_equal(session_save(s, path, a, NULL, &err), 0);
	assert_non_null(strstr(read_text(path), "catscope-session"));
	/* The file just written is a session, so saving again replaces it. */
	assert_int_equal(session_save(s, path, a, NULL, &err), 0);

	session_free(s);
	analysis_free(a);
}

/* The journal, re-run with its undos, ends where the final state is. */
static void
test_session_journal_matches_final(void **state)
{
	struct fixture *f = *state;
	struct analysis *a = workspace_new_analysis(&f->ws);
	struct analysis *b = workspace_new_analysis(&f->ws);
	struct session *s, *loaded;
	struct transform_spec spec;
	struct quant_config qc;
	struct error err;
	char path[4200];
	int all[3];

	s = session_new(testutil_data_path("stories260K.gguf"), f->ws.model, NULL, NULL, a);
	set_and_record(s, a, "blk.1.ffn_in", "smooth");
	all[0] = session_site_index(a, "blk.0.ffn_down");
	all[1] = session_site_index(a, "blk.2.ffn_down");
	all[2] = session_site_index(a, "blk.4.ffn_down");
	parse_spec("cat1", &spec);
	for (int k = 0; k < 3; k++)
		analysis_set_transform(a, all[k], &spec);
	session_record_apply_all(s, a, all, 3, &spec);

	/* A quantizer change, then its undo: the journal must drop it again. */
	qc = a->quant;
	qc.weight.bits = 2;
	analysis_set_quant(a, &qc);
	session_record_quant(s, &qc);
	qc.weight.bits = 4;
	analysis_set_quant(a, &qc);
	session_record_undo(s);

	snprintf(path, sizeof(path), "%s/journal.json", f->dir);
	assert_int_equal(session_save(s, path, a, NULL, &err), 0);
	assert_int_equal(session_load(path, &loaded, &err), 0);
	assert_int_equal(session_apply_journal(loaded, b, &err), 0);
	if (session_state_differs(loaded, b, &err) != 0)
		fail_msg("journal and final state differ: %s", err.message);
	assert_int_equal(b->quant.weight.bits, 4);
	session_free(loaded);
	session_free(s);
	analysis_free(a);
	analysis_free(b);
}

/* Writes text to dir/name and returns the path (static buffer). */
static const char *
write_file(const struct fixture *f, const char *name, const char *text)
{
	static char path[4200];
	FILE *out;

	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	out = fopen(path, "w");
	assert_non_null(out);
	fputs(text, out);
	fclose(out);
	return path;
}

/* The rest of a file after VALID_HEAD, with the given JSON as its journal. */
#define JOURNAL(json) "\"quant\": \"w4\", \"sites\": [], \"journal\": " json "}"

#define VALID_HEAD "{\"format\": \"catscope-session\", \"version\": 1,\n" \
	"\"model\": {\"path\": \"m.gguf\", \"fingerprint\": \"00000000000000ff\"},\n"

static void
test_session_load_rejects_bad_files(void **state)
{
	static const struct {
		const char *name;
		const char *text;
		const char *expect;  /* part of the message after the file name */
	} cases[] = {
		{ "truncated", VALID_HEAD "\"quant\": \"w4,a4\", \"sites\": [", ":3:28: invalid JSON" },
		{ "version", "{\"format\": \"catscope-session\", \"version\": 7}", "version: version 7 is not supported" },
		{ "format", "{\"format\": \"other\", \"version\": 1}", "format: 'other' is not a catscope session" },
		{ "not object", "[1, 2]", "(top level): expected an object, found an array" },
		{ "model type", "{\"format\": \"catscope-session\", \"version\": 1, \"model\": 3}",
		  "model: expected an object" },
		{ "fingerprint", "{\"format\": \"catscope-session\", \"version\": 1, \"model\": "
		  "{\"path\": \"m\", \"fingerprint\": \"xyz\"}}", "model.fingerprint: 'xyz' is not 16" },
		{ "quant type", VALID_HEAD "\"quant\": 4, \"sites\": []}", "quant: expected a string, found an integer" },
		{ "bad quant", VALID_HEAD "\"quant\": \"w9\", \"sites\": []}", "quant: " },
		{ "transform", VALID_HEAD "\"quant\": \"w4\", \"sites\": [{\"site\": \"blk.0.ffn_down\", "
		  "\"transform\": \"cat\"}, {\"site\": \"blk.1.ffn_in\", \"transform\": \"magic\"}]}",
		  "sites[1].transform: " },
		{ "site name", VALID_HEAD "\"quant\": \"w4\", \"sites\": [{\"site\": \"layer0\", "
		  "\"transform\": \"cat\"}]}", "sites[0].site: 'layer0' is not a site name" },
		{ "block wraps", VALID_HEAD "\"quant\": \"w4\", \"sites\": [{\"site\": \"blk.4294967296.attn_in\", "
		  "\"transform\": \"cat\"}]}", "sites[0].site: 'blk.4294967296.attn_in' is not a site name" },
		{ "block sign", VALID_HEAD "\"quant\": \"w4\", \"sites\": [{\"site\": \"blk.+1.attn_in\", "
		  "\"transform\": \"cat\"}]}", "sites[0].site: 'blk.+1.attn_in' is not a site name" },
		{ "block zeros", VALID_HEAD "\"quant\": \"w4\", \"sites\": [{\"site\": \"blk.00.attn_in\", "
		  "\"transform\": \"cat\"}]}", "sites[0].site: 'blk.00.attn_in' is not a site name" },
		{ "twice", VALID_HEAD "\"quant\": \"w4\", \"sites\": [{\"site\": \"blk.0.ffn_in\", "
		  "\"transform\": \"cat\"}, {\"site\": \"blk.0.ffn_in\", \"transform\": \"none\"}]}",
		  "sites[1].site: blk.0.ffn_in is listed twice" },
		{ "unknown field", VALID_HEAD "\"quant\": \"w4\", \"sites\": [], \"colour\": 1}",
		  "colour: unknown field 'colour'" },
		{ "action", VALID_HEAD "\"quant\": \"w4\", \"sites\": [], \"journal\": [{\"t\": "
		  "\"2026-01-01T00:00:00Z\", \"action\": \"jump\"}]}", "journal[0].action: unknown action 'jump'" },
		{ "action site", VALID_HEAD "\"quant\": \"w4\", \"sites\": [], \"journal\": [{\"t\": "
		  "\"2026-01-01T00:00:00Z\", \"action\": \"set_transform\", \"site\": 5, \"transform\": \"cat\"}]}",
		  "journal[0].site: expected a site name" },
		{ "ui view", VALID_HEAD "\"quant\": \"w4\", \"sites\": [], \"ui\": {\"view\": \"3d\"}}",
		  "ui.view: unknown view '3d'" },
		{ "journal type", VALID_HEAD JOURNAL("5"), "journal: expected an array of actions" },
		{ "entry type", VALID_HEAD JOURNAL("[\"undo\"]"), "journal[0]: expected an object" },
		{ "time missing", VALID_HEAD JOURNAL("[{\"action\": \"undo\"}]"),
		  "journal[0].t: missing; expected a string" },
		{ "time type", VALID_HEAD JOURNAL("[{\"t\": 1733346600, \"action\": \"undo\"}]"),
		  "journal[0].t: expected a string, found an integer" },
		{ "time words", VALID_HEAD JOURNAL("[{\"t\": \"yesterday\", \"action\": \"undo\"}]"),
		  "journal[0].t: 'yesterday' is not an ISO 8601 UTC time" },
		{ "time month", VALID_HEAD JOURNAL("[{\"t\": \"2026-13-01T00:00:00Z\", \"action\": \"undo\"}]"),
		  "journal[0].t: '2026-13-01T00:00:00Z' is not an ISO 8601 UTC time" },
		{ "time zone", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00+01\", \"action\": \"undo\"}]"),
		  "journal[0].t: '2026-01-01T00:00:00+01' is not an ISO 8601 UTC time" },
		{ "time sign", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T-1:00:00Z\", \"action\": \"undo\"}]"),
		  "journal[0].t: '2026-01-01T-1:00:00Z' is not an ISO 8601 UTC time" },
		{ "action missing", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\"}]"),
		  "journal[0].action: missing; expected a string" },
		{ "transform missing", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", "
		  "\"action\": \"set_transform\", \"site\": \"blk.0.ffn_in\"}]"),
		  "journal[0].transform: missing; expected a string" },
		{ "transform bad", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", "
		  "\"action\": \"set_transform\", \"site\": \"blk.0.ffn_in\", \"transform\": \"magic\"}]"),
		  "journal[0].transform: " },
		{ "sites type", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", "
		  "\"action\": \"apply_all\", \"sites\": \"blk.0.ffn_in\", \"transform\": \"cat\"}]"),
		  "journal[0].sites: expected an array of site names" },
		{ "sites name", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", "
		  "\"action\": \"apply_all\", \"sites\": [\"blk.0.ffn_in\", \"mlp\"], \"transform\": \"cat\"}]"),
		  "journal[0].sites[1]: 'mlp' is not a site name" },
		{ "quant missing", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_quant\"}]"),
		  "journal[0].quant: missing; expected a string" },
		{ "quant bad", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_quant\", "
		  "\"quant\": \"w9\"}]"), "journal[0].quant: " },
		{ "undo field", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_quant\", "
		  "\"quant\": \"w3\"}, {\"t\": \"2026-01-01T00:00:01Z\", \"action\": \"undo\", \"quant\": \"w2\"}]"),
		  "journal[1].quant: 'quant' is not a field of undo actions; they take t and action" },
		{ "transform field", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", "
		  "\"action\": \"set_transform\", \"site\": \"blk.0.ffn_in\", \"sites\": [], \"transform\": \"cat\"}]"),
		  "journal[0].sites: 'sites' is not a field of set_transform actions" },
		{ "quant field", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_quant\", "
		  "\"quant\": \"w3\", \"transform\": \"cat\"}]"),
		  "journal[0].transform: 'transform' is not a field of set_quant actions" },
		{ "undo first", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"undo\"}]"),
		  "journal[0]: undo with nothing left to undo" },
		{ "undo twice", VALID_HEAD JOURNAL("[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_quant\", "
		  "\"quant\": \"w3\"}, {\"t\": \"2026-01-01T00:00:01Z\", \"action\": \"undo\"}, "
		  "{\"t\": \"2026-01-01T00:00:02Z\", \"action\": \"undo\"}]"),
		  "journal[2]: undo with nothing left to undo" },
		{ "start site", VALID_HEAD "\"quant\": \"w4\", \"sites\": [], \"journal_start\": {\"quant\": \"w4\", "
		  "\"sites\": [{\"site\": \"blk.0\", \"transform\": \"cat\"}]}}",
		  "journal_start.sites[0].site: 'blk.0' is not a site name" },
	};
	struct fixture *f = *state;
	struct session *s;
	struct error err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = write_file(f, "bad.json", cases[i].text);

		s = (struct session *)1;
		if (session_load(path, &s, &err) == 0)
			fail_msg("case '%s' was accepted", cases[i].name);
		assert_null(s);
		if (strncmp(err.message, path, strlen(path)) != 0 || strstr(err.message, cases[i].expect) == NULL)
			fail_msg("case '%s': message '%s' lacks the file or '%s'", cases[i].name, err.message,
				 cases[i].expect);
		assert_null(strchr(err.message, '\n'));
	}
}

static void
test_session_missing_file(void **state)
{
	struct fixture *f = *state;
	struct session *s;
	struct error err;
	char path[4200];

	snprintf(path, sizeof(path), "%s/absent.json", f->dir);
	assert_int_equal(session_load(path, &s, &err), -1);
	assert_non_null(strstr(err.message, "absent.json: cannot read the session"));
}

static void
test_session_apply_rejects_unknown_site(void **state)
{
	struct fixture *f = *state;
	struct analysis *a = workspace_new_analysis(&f->ws);
	struct session *s;
	struct error err;
	const char *path = write_file(f, "site.json", VALID_HEAD "\"quant\": \"w4\", \"sites\": ["
				      "{\"site\": \"blk.0.ffn_in\", \"transform\": \"cat\"}, "
				      "{\"site\": \"blk.9.ffn_down\", \"transform\": \"cat\"}]}");

	assert_int_equal(session_load(path, &s, &err), 0);
	assert_int_equal(session_apply(s, a, &err), -1);
	assert_non_null(strstr(err.message, "sites[1].site: the model has no site blk.9.ffn_down"));
	/* Nothing changed: the valid first entry was not applied either. */
	assert_int_equal(a->sites[session_site_index(a, "blk.0.ffn_in")].spec.kind, TRANSFORM_NONE);
	session_free(s);
	analysis_free(a);
}

/* A journal site the model lacks fails even when only the final state is applied,
 * so a session whose journal cannot be re-run is not replayed and saved again. */
static void
test_session_apply_checks_journal_sites(void **state)
{
	static const struct {
		const char *journal;
		const char *expect;
	} cases[] = {
		{ "[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_transform\", \"site\": "
		  "\"blk.5.ffn_in\", \"transform\": \"cat\"}]", "journal[0].site: the model has no site blk.5.ffn_in" },
		{ "[{\"t\": \"2026-01-01T00:00:00Z\", \"action\": \"set_quant\", \"quant\": \"w3\"}, "
		  "{\"t\": \"2026-01-01T00:00:01Z\", \"action\": \"apply_all\", \"sites\": "
		  "[\"blk.4.ffn_in\", \"blk.40.attn_out\"], \"transform\": \"cat\"}]",
		  "journal[1].sites[1]: the model has no site blk.40.attn_out" },
	};
	struct fixture *f = *state;
	struct analysis *a = workspace_new_analysis(&f->ws);
	struct session *s;
	struct error err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[1024];
		const char *path;

		snprintf(text, sizeof(text), VALID_HEAD "\"quant\": \"w3\", \"sites\": [{\"site\": "
			 "\"blk.0.ffn_in\", \"transform\": \"cat\"}], \"journal\": %s}", cases[i].journal);
		path = write_file(f, "journal-site.json", text);
		assert_int_equal(session_load(path, &s, &err), 0);
		assert_int_equal(session_apply(s, a, &err), -1);
		if (strstr(err.message, cases[i].expect) == NULL)
			fail_msg("case %zu: message '%s' lacks '%s'", i, err.message, cases[i].expect);
		/* Nothing changed: the final state's valid entries were not applied. */
		assert_int_equal(a->sites[session_site_index(a, "blk.0.ffn_in")].spec.kind, TRANSFORM_NONE);
		assert_int_equal(a->quant.weight.bits, 4);
		session_free(s);
	}

	/* A journal_start site the model lacks fails the same way. */
	assert_int_equal(session_load(write_file(f, "start-site.json", VALID_HEAD "\"quant\": \"w4\", "
						 "\"sites\": [], \"journal_start\": {\"quant\": \"w4\", "
						 "\"sites\": [{\"site\": \"blk.7.ffn_in\", "
						 "\"transform\": \"cat\"}]}}"), &s, &err), 0);
	assert_int_equal(session_apply(s, a, &err), -1);
	assert_non_null(strstr(err.message, "journal_start.sites[0].site: the model has no site blk.7.ffn_in"));
	session_free(s);
	analysis_free(a);
}

/* The paths as written stay available next to the resolved ones, and an override
 * drops the written one, so that messages never name a path that was not used. */
static void
test_session_paths_written(void **state)
{
	struct fixture *f = *state;
	struct session *s;
	struct error err;
	char want[8300];
	const char *path = write_file(f, "written.json", "{\"format\": \"catscope-session\", \"version\": 1,"
				      "\"model\": {\"path\": \"../models/m.gguf\", \"fingerprint\": \"00000000000000ff\"},"
				      "\"calib\": {\"path\": \"/elsewhere/c.cache\", \"model_fingerprint\": "
				      "\"00000000000000ff\", \"provenance_hash\": \"0000000000000001\"},"
				      "\"quant\": \"w4\", \"sites\": []}");

	assert_int_equal(session_load(path, &s, &err), 0);
	assert_string_equal(session_model_path_written(s), "../models/m.gguf");
	snprintf(want, sizeof(want), "%s/../models/m.gguf", f->dir);
	assert_string_equal(session_model_path(s), want);
	assert_string_equal(session_cache_path_written(s), "/elsewhere/c.cache");
	assert_string_equal(session_cache_path(s), "/elsewhere/c.cache");

	session_set_paths(s, "other.gguf", NULL);
	assert_null(session_model_path_written(s));
	assert_string_equal(session_cache_path_written(s), "/elsewhere/c.cache");
	session_set_paths(s, NULL, "other.cache");
	assert_null(session_cache_path_written(s));
	session_free(s);
}

static void
test_session_check_fingerprint(void **state)
{
	struct fixture *f = *state;
	struct session *s;
	struct error err;
	char fingerprint[17];
	const char *path = write_file(f, "fp.json", VALID_HEAD "\"quant\": \"w4\", \"sites\": []}");

	assert_int_equal(session_load(path, &s, &err), 0);
	assert_int_equal(session_check(s, f->ws.model, "m.gguf", NULL, NULL, &err), -1);
	snprintf(fingerprint, sizeof(fingerprint), "%016" PRIx64, f->ws.model->fingerprint);
	assert_non_null(strstr(err.message, "00000000000000ff"));
	assert_non_null(strstr(err.message, fingerprint));
	assert_non_null(strstr(err.message, "m.gguf"));
	assert_null(strstr(err.message, "--force"));
	session_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_save_load_round_trip),
		cmocka_unit_test(test_session_model_path_relative),
		cmocka_unit_test(test_session_save_keeps_other_files),
		cmocka_unit_test(test_session_journal_matches_final),
		cmocka_unit_test(test_session_load_rejects_bad_files),
		cmocka_unit_test(test_session_missing_file),
		cmocka_unit_test(test_session_apply_rejects_unknown_site),
		cmocka_unit_test(test_session_apply_checks_journal_sites),
		cmocka_unit_test(test_session_paths_written),
		cmocka_unit_test(test_session_check_fingerprint),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
