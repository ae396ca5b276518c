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

/* Builds a tokenizer with llama.cpp's SentencePiece semantics. "▁" is put in front of
 * non-empty text and every space becomes "▁", so runs of spaces are kept. Of the
 * adjacent pairs whose concatenation is a piece, the one with the highest score merges
 * first, leftmost on ties. Characters left without a piece become <0xNN> byte tokens.
 * Text is never searched for control-token spellings such as "<s>". The vocabulary is
 * copied, so the caller keeps ownership of vocab. Caller frees the result with
 * tokenizer_free(). */
struct tokenizer *tokenizer_new_spm(const struct tokenizer_spm_vocab *vocab, struct error *err);
/* Loads dir/tokenizer.json and, if present, dir/tokenizer_config.json. Supports the BPE
 * model in its SentencePiece form (Prepend/Replace normalizer, byte fallback) and its
 * byte-level form (NFC, regex Split, ByteLevel), added tokens, and TemplateProcessing for
 * BOS/EOS. Any other component fails with an error naming the file and the key.
 * Caller frees the result with tokenizer_free(). */
struct tokenizer *tokenizer_load_hf(const char *dir, struct error *err);
void tokenizer_free(struct tokenizer *tok); /* NULL is a no-op */

/* Encodes text (UTF-8, len bytes) into a newly allocated array stored in *ids.
 * add_special adds what the model's convention adds (BOS for Llama 2), as
 * Hugging Face's add_special_tokens does. Returns 0, and the caller frees *ids. Returns
 * -1 with err set when a byte-level tokenizer gets text that is not valid UTF-8, or when
 * a byte has neither a byte token nor an unknown token to fall back to. */
int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len, bool add_special,
		     int32_t **ids, size_t *n_ids, struct error *err);

/* Returns a newly allocated NUL-terminated string for ids (caller frees). Control tokens
 * (BOS, EOS, Hugging Face special added tokens) are dropped, byte tokens become their
 * byte, and "▁" becomes a space. A GGUF token of type TOKEN_TYPE_UNKNOWN decodes as its
 * piece, such as "<unk>". For SentencePiece-style tokenizers the one space that
 * encoding put in front of the text is removed from the start of the result, as Hugging
 * Face's Strip decoder does, so decode(encode(text)) == text. Out-of-range ids are
 * skipped. The bytes need not be valid UTF-8 when ids end inside a character. */
char *tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n_ids);

/* Returns the bytes that id adds to streamed output, borrowed from tok (valid until
 * tokenizer_free), and stores their count in *len. prev_id is the token before id, or -1
 * at the start. After the start or a control token such as BOS, a SentencePiece-style
 * tokenizer drops the leading space of the piece, as llama2.c's decode does. A byte token
 * yields one byte, so a multi-byte character arrives over several calls. Ids out of
 * range give "" and *len = 0. */
const char *tokenizer_decode_token(const struct tokenizer *tok, int32_t prev_id, int32_t id,
				   size_t *len);

/* Returns the piece of id as the vocabulary spells it ("▁the", "Ġthe", "<0x0A>", "<s>"),
 * borrowed from tok, or NULL for an id out of range. */
const char *tokenizer_token_piece(const struct tokenizer *tok, int32_t id);
/* Returns the token's enum token_type, or 0 for an id out of range. Hugging Face special
 * added tokens are TOKEN_TYPE_CONTROL, other added tokens TOKEN_TYPE_USER_DEFINED. */
int tokenizer_token_type(const struct tokenizer *tok, int32_t id);
bool tokenizer_is_control(const struct tokenizer *tok, int32_t id);

size_t tokenizer_vocab_size(const struct tokenizer *tok);
int32_t tokenizer_bos_id(const struct tokenizer *tok); /* -1 when the model has none */
int32_t tokenizer_eos_id(const struct tokenizer *tok);

#endif
