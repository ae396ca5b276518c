/* Fuzz target: the session file (catscope-session(5)). An accepted input is checked
 * against a model, applied, its journal re-run, then saved and loaded again.
 *
 * Sessions only need a model's layer count and fingerprint until a report is
 * computed, so the model here has no weights: five layers like stories260K and the
 * fingerprint of the example session, so mutations of it pass session_check. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/session.h"
#include "fuzz_common.h"

#define FUZZ_MODEL_LAYERS 5
#define FUZZ_MODEL_FINGERPRINT 0xe33b6a3ef879b195ULL

static struct model fuzz_model;
static char saved_path[4200];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_model.config.n_layers = FUZZ_MODEL_LAYERS;
	fuzz_model.fingerprint = FUZZ_MODEL_FINGERPRINT;
	snprintf(saved_path, sizeof(saved_path), "%s/saved.json", fuzz_temp_dir());
	return 0;
}

/* Reads every field the explorer and replay read, so a short string or a bad index
 * shows up under AddressSanitizer. */
static void
read_fields(const struct session *s)
{
	const struct session_ui *ui = session_ui(s);
	volatile size_t sink = 0;
	uint64_t model_fingerprint, provenance_hash;
	char text[128];

	sink += strlen(session_model_path(s));
	if (session_cache_path(s) != NULL)
		sink += strlen(session_cache_path(s));
	sink += session_cache_fingerprints(s, &model_fingerprint, &provenance_hash);
	sink += strlen(ui->selected) + strlen(ui->sort) + strlen(ui->filter) + strlen(ui->view);
	quant_config_format(session_quant(s), text, sizeof(text));
	for (int i = 0; i < session_journal_length(s); i++) {
		const struct session_action *action = session_journal_action(s, i);

		sink += strlen(action->time);
		for (int k = 0; k < action->n_sites; k++)
			sink += strlen(action->sites[k]);
		transform_spec_format(&action->spec, text, sizeof(text));
	}
	(void)sink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session *s, *again;
	struct analysis *a;
	struct error err;

	if (session_load(fuzz_memory_file(data, size), &s, &err) != 0)
		return 0;
	read_fields(s);
	session_check(s, &fuzz_model, "model.gguf", NULL, NULL, &err);

	a = analysis_new(&fuzz_model, NULL, NULL);
	if (session_apply(s, a, &err) == 0 && session_apply_journal(s, a, &err) == 0)
		session_state_differs(s, a, &err);

	/* Whatever was accepted and saved must load again. */
	if (session_save(s, saved_path, a, NULL, &err) != 0) {
		fprintf(stderr, "saving an accepted session failed: %s\n", err.message);
		abort();
	}
	if (session_load(saved_path, &again, &err) != 0) {
		fprintf(stderr, "a saved session does not load: %s\n", err.message);
		abort();
	}
	session_free(again);
	analysis_free(a);
	session_free(s);
	return 0;
}
