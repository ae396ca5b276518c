/* SentencePiece-style tokenizer built from a GGUF "llama" vocabulary (score merges). */
#include "config.h"

#include <string.h>

#include "catscope/alloc.h"
#include "catscope/tokenizer.h"
#include "tokenizer_impl.h"

static bool
is_byte_piece(const char *piece, size_t len)
{
	return len == 6 && memcmp(piece, "<0x", 3) == 0 && piece[5] == '>';
}

struct tokenizer *
tokenizer_new_spm(const struct tokenizer_spm_vocab *vocab, struct error *err)
{
	if (vocab->n_tokens == 0 || vocab->n_tokens > TOKENIZER_MAX_TOKENS) {
		error_set(err, "tokenizer: vocabulary of %zu tokens, expected 1 to %d",
			  vocab->n_tokens, TOKENIZER_MAX_TOKENS);
		return NULL;
	}
	if (vocab->pieces == NULL || vocab->scores == NULL) {
		error_set(err, "tokenizer: the vocabulary has no %s",
			  vocab->pieces == NULL ? "pieces" : "scores");
		return NULL;
	}
	const int32_t special_ids[3] = {vocab->bos_id, vocab->eos_id, vocab->unknown_id};
	static const char *const special_names[3] = {"BOS", "EOS", "unknown"};
	struct tokenizer *tok;

	for (size_t i = 0; i < 3; i++) {
		if (special_ids[i] < -1 || special_ids[i] >= (int64_t)vocab->n_tokens) {
			error_set(err, "tokenizer: %s id %d is outside the vocabulary of %zu tokens",
				  special_names[i], special_ids[i], vocab->n_tokens);
			return NULL;
		}
	}

	tok = tokenizer_alloc(vocab->n_tokens);
	tok->kind = TOKENIZER_SPM;
	tok->merge_mode = MERGE_BY_SCORE;
	tok->scores = alloc_array(vocab->n_tokens, sizeof(*tok->scores));
	for (size_t id = 0; id < vocab->n_tokens; id++) {
		const char *piece = vocab->pieces[id] ? vocab->pieces[id] : "";
		size_t len = vocab->piece_lengths ? vocab->piece_lengths[id] : strlen(piece);

		tok->pieces[id] = alloc_strndup(piece, len);
		tok->piece_lengths[id] = len;
		tok->scores[id] = vocab->scores[id];
		if (vocab->types != NULL)
			tok->types[id] = vocab->types[id];
		else if (is_byte_piece(piece, len))
			tok->types[id] = TOKEN_TYPE_BYTE;
		else
			tok->types[id] = TOKEN_TYPE_NORMAL;
	}
	if (vocab->types == NULL) {
		if (vocab->bos_id >= 0)
			tok->types[vocab->bos_id] = TOKEN_TYPE_CONTROL;
		if (vocab->eos_id >= 0)
			tok->types[vocab->eos_id] = TOKEN_TYPE_CONTROL;
		if (vocab->unknown_id >= 0)
			tok->types[vocab->unknown_id] = TOKEN_TYPE_CONTROL;
	}
	tok->bos_id = vocab->bos_id;
	tok->eos_id = vocab->eos_id;
	tok->unknown_id = vocab->unknown_id;
	tok->add_bos = vocab->add_bos;
	tok->byte_fallback = true;
	tok->prepend_space_mark = true;
	tok->replace_spaces = true;
	tok->strip_decoded_space = true;
	/* NOTE: user-defined pieces are merged like normal ones rather than matched whole
	 * in the text first, as llama.cpp does. The stories260K vocabulary has none. */
	tokenizer_finish(tok);
	return tok;
}
