/* Fuzz target: a Hugging Face tokenizer.json, loaded with jansson and turned into a
 * tokenizer, which then encodes and decodes a fixed text. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/tokenizer.h"
#include "fuzz_common.h"

static const char *fuzz_dir;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_dir = fuzz_temp_dir();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char text[] = "Hello world!  It's 2024 \xe2\x96\x81\n\tcaf\xc3\xa9 <s></s> \xf0\x9f\x98\x80";
	struct error err;
	struct tokenizer *tok;
	int32_t *ids = NULL;
	size_t n_ids = 0;

	fuzz_write_file(fuzz_dir, "tokenizer.json", data, size);
	tok = tokenizer_load_hf(fuzz_dir, &err);
	if (tok == NULL)
		return 0;
	if (tokenizer_encode(tok, text, sizeof(text) - 1, true, &ids, &n_ids, &err) == 0) {
		char *decoded = tokenizer_decode(tok, ids, n_ids);
		size_t len;

		free(decoded);
		for (size_t i = 0; i < n_ids; i++)
			tokenizer_decode_token(tok, i ? ids[i - 1] : -1, ids[i], &len);
		free(ids);
	}
	for (int32_t id = -1; id <= (int32_t)tokenizer_vocab_size(tok); id++) {
		tokenizer_token_piece(tok, id);
		tokenizer_token_type(tok, id);
	}
	tokenizer_free(tok);
	return 0;
}
