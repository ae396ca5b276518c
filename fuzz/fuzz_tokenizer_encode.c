/* Fuzz target: arbitrary bytes (often not UTF-8) through the encoders of two fixed
 * tokenizers, a SentencePiece-style one and a byte-level one, then decoded again. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/tokenizer.h"
#include "fuzz_common.h"

static struct tokenizer *spm;
static struct tokenizer *byte_level;

/* A byte-level vocabulary with every byte's character, a few merges and an added
 * token, so that the regex split, the merge loop and added-token matching all run. */
static const char byte_level_json[] =
	"{\"model\": {\"type\": \"BPE\", \"vocab\": {%s\"\\u0120t\": 256, \"he\": 257,"
	" \"\\u0120the\": 258, \"in\": 259}, \"merges\": [\"\\u0120 t\", \"h e\", \"\\u0120t he\","
	" \"i n\"]},"
	" \"added_tokens\": [{\"id\": 260, \"content\": \"<|end|>\", \"special\": true}],"
	" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}}";

static struct tokenizer *
build_spm(void)
{
	static const char *const pieces[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
					       "\xe2\x96\x81" "a", "ab", "<0x0A>", "<0xFF>",
					       "\xc3\xa9", "\xe2\x96\x81\xe2\x96\x81" };
	enum { N = sizeof(pieces) / sizeof(pieces[0]) };
	size_t lengths[N];
	float scores[N];
	struct tokenizer_spm_vocab vocab = { 0 };
	struct error err;
	struct tokenizer *tok;

	for (size_t i = 0; i < N; i++) {
		lengths[i] = strlen(pieces[i]);
		scores[i] = -(float)i;
	}
	vocab.n_tokens = N;
	vocab.pieces = pieces;
	vocab.piece_lengths = lengths;
	vocab.scores = scores;
	vocab.bos_id = 1;
	vocab.eos_id = 2;
	vocab.unknown_id = 0;
	vocab.add_bos = true;
	tok = tokenizer_new_spm(&vocab, &err);
	if (tok == NULL) {
		fprintf(stderr, "%s\n", err.message);
		abort();
	}
	return tok;
}

/* GPT-2's printable stand-in for each byte, as tokenizer.json spells it. */
static unsigned
byte_level_char(unsigned b)
{
	unsigned shift = 0;

	if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
		return b;
	for (unsigned c = 0; c < b; c++) {
		if (!((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff)))
			shift++;
	}
	return 256 + shift;
}

static struct tokenizer *
build_byte_level(const char *dir)
{
	char entries[256 * 24];
	char json[sizeof(entries) + sizeof(byte_level_json)];
	size_t used = 0;
	struct error err;
	struct tokenizer *tok;

	for (unsigned b = 0; b < 256; b++)
		used += (size_t)snprintf(entries + used, sizeof(entries) - used, "\"\\u%04x\": %u, ",
					 byte_level_char(b), b);
	snprintf(json, sizeof(json), byte_level_json, entries);
	fuzz_write_file(dir, "tokenizer.json", (const uint8_t *)json, strlen(json));
	tok = tokenizer_load_hf(dir, &err);
	if (tok == NULL) {
		fprintf(stderr, "%s\n", err.message);
		abort();
	}
	return tok;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	spm = build_spm();
	byte_level = build_byte_level(fuzz_temp_dir());
	/* The tokenizer is in memory now; libFuzzer may end the run without atexit. */
	fuzz_temp_dir_remove();
	return 0;
}

static void
round_trip(const struct tokenizer *tok, const uint8_t *data, size_t size, bool add_special)
{
	struct error err;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	size_t len;

	if (tokenizer_encode(tok, (const char *)data, size, add_special, &ids, &n_ids, &err) != 0)
		return;
	free(tokenizer_decode(tok, ids, n_ids));
	for (size_t i = 0; i < n_ids; i++) {
		if (ids[i] < 0 || (size_t)ids[i] >= tokenizer_vocab_size(tok))
			abort();
		tokenizer_decode_token(tok, i ? ids[i - 1] : -1, ids[i], &len);
	}
	free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	round_trip(spm, data, size, size % 2 == 0);
	round_trip(byte_level, data, size, size % 2 == 1);
	return 0;
}
