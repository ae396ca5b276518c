/* Tokenizers: text to token ids and back.
 *
 * Two algorithms cover the models catscope reads:
 *  - SentencePiece-style BPE ("llama" in GGUF, Llama 2, Mistral, TinyLlama): score- or
 *    rank-driven merges over Unicode characters, with byte fallback to <0xNN> tokens;
 *  - byte-level BPE (GPT-2 style, Llama 3, Qwen): a regex pre-tokenizer split, bytes
 *    mapped to printable characters, ranked merges.
 * A tokenizer is built either from GGUF metadata arrays or from a Hugging Face
 * tokenizer.json (with tokenizer_config.json for the BOS convention). */
#ifndef CATSCOPE_TOKENIZER_H
#define CATSCOPE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"

struct tokenizer;

/* GGUF tokenizer.ggml.token_type values. */
enum token_type {
	TOKEN_TYPE_NORMAL = 1,
	TOKEN_TYPE_UNKNOWN = 2,
	TOKEN_TYPE_CONTROL = 3,
	TOKEN_TYPE_USER_DEFINED = 4,
	TOKEN_TYPE_UNUSED = 5,
	TOKEN_TYPE_BYTE = 6,
};

/* Vocabulary as GGUF stores it for tokenizer.ggml.model = "llama". Pieces use U+2581
 * for a space; types may be NULL (then <0xNN> pieces are byte tokens and the BOS, EOS
 * and unknown ids are control tokens). Ids that are -1 are absent. */
struct tokenizer_spm_vocab {
	size_t n_tokens;
	const char *const *pieces;
	const size_t *piece_lengths;
	const float *scores;
	const int32_t *types;
	int32_t bos_id;
	int32_t eos_id;
	int32_t unknown_id;
	bool add_bos;
};

struct tokenizer *tokenizer_new_spm(const struct tokenizer_spm_vocab *vocab, struct error *err);
/* Loads dir/tokenizer.json and, if present, dir/tokenizer_config.json. */
struct tokenizer *tokenizer_load_hf(const char *dir, struct error *err);
void tokenizer_free(struct tokenizer *tok);

/* Encodes text (UTF-8, len bytes) into a newly allocated array stored in *ids.
 * add_special adds what the model's convention adds (BOS for Llama 2), as
 * Hugging Face's add_special_tokens does. */
int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len, bool add_special,
		     int32_t **ids, size_t *n_ids, struct error *err);

/* Returns a newly allocated UTF-8 string for ids, dropping control tokens. */
char *tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n_ids);

size_t tokenizer_vocab_size(const struct tokenizer *tok);
int32_t tokenizer_bos_id(const struct tokenizer *tok); /* -1 when the model has none */
int32_t tokenizer_eos_id(const struct tokenizer *tok);

#endif
