/* Internals shared by the tokenizer sources: the tokenizer struct, the piece and merge
 * hash indexes, and the BPE merge loop. Only src/model/tokenizer*.c include it, and it
 * is not installed. */
#ifndef CS_TOKENIZER_IMPL_H
#define CS_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"
#include "catscope/tokenizer.h"

/* "▁" (U+2581), SentencePiece's stand-in for a space. */
#define TOKENIZER_SPACE_MARK "\xe2\x96\x81"
#define TOKENIZER_SPACE_MARK_LEN 3

/* Largest vocabulary accepted from a file. Qwen3's 151,669 tokens fit with room to
 * spare, and the cap stops a corrupt id from sizing the tables. */
#define TOKENIZER_MAX_TOKENS (1 << 22)

enum tokenizer_kind {
	TOKENIZER_SPM,        /* Unicode characters, "▁" for spaces, byte fallback */
	TOKENIZER_BYTE_LEVEL, /* GPT-2 bytes-to-characters map after a regex split */
};

enum tokenizer_merge_mode {
	MERGE_BY_SCORE, /* pairs whose concatenation is a piece, higher score first */
	MERGE_BY_RANK,  /* pairs listed in merges, lower rank first */
};

/* Open-addressing table from piece text to id, keyed by tok->pieces. */
struct piece_index {
	size_t mask;
	int32_t *slots; /* -1 when empty */
};

/* Open-addressing table from (left id, right id) to merge rank and merged id. */
struct merge_index {
	size_t mask;
	uint64_t *keys; /* MERGE_KEY_EMPTY when empty */
	int32_t *ranks;
	int32_t *results;
};

#define MERGE_KEY_EMPTY UINT64_MAX

/* Set of (character, character) pairs that occur next to each other inside some piece.
 * A character is its UTF-8 bytes packed into a uint32_t. Merging can never join two
 * neighbours whose pair is absent, so the SentencePiece encoder cuts the text there and
 * merges the pieces separately, which keeps the heap small on long texts. */
struct char_pair_set {
	size_t mask;
	uint64_t *keys; /* MERGE_KEY_EMPTY when empty */
};

/* A token matched whole in the input before normalization (Hugging Face added_tokens). */
struct added_token {
	char *text;
	size_t len;
	int32_t id;
};

struct tokenizer {
	enum tokenizer_kind kind;
	enum tokenizer_merge_mode merge_mode;

	size_t n_tokens;
	char **pieces;          /* [n_tokens] NUL-terminated, vocabulary spelling */
	size_t *piece_lengths;  /* [n_tokens] */
	float *scores;          /* [n_tokens], MERGE_BY_SCORE only */
	int32_t *types;         /* [n_tokens] enum token_type */
	char **decoded;         /* [n_tokens] bytes each token adds to decoded text */
	size_t *decoded_lengths;

	struct piece_index index;
	struct merge_index merges;
	struct char_pair_set char_pairs; /* TOKENIZER_SPM only */

	int32_t byte_ids[256];   /* <0xNN> byte-fallback token of each byte, or -1 */
	int32_t byte_chars[256]; /* byte level: token of the character each byte maps to */

	int32_t bos_id;
	int32_t eos_id;
	int32_t unknown_id;
	bool add_bos;
	bool add_eos;

	/* Normalization and pre-tokenization. */
	bool byte_fallback;
	bool prepend_space_mark;   /* put "▁" before each non-empty segment */
	bool replace_spaces;       /* " " -> "▁" */
	bool nfc;
	bool prefix_space;         /* byte level add_prefix_space */
	bool ignore_merges;        /* a pre-token that is a whole piece skips the merges */
	void *split_regex;         /* pcre2_code *, or NULL for no split */
	bool strip_decoded_space;  /* decode drops the one leading space */

	struct added_token *added; /* sorted by length, longest first */
	size_t n_added;
	bool added_starts[256];    /* bytes that begin some added token */
};

/* Growable id list used while encoding. */
struct id_list {
	int32_t *ids;
	size_t n;
	size_t cap;
};

void id_list_push(struct id_list *list, int32_t id);

/* tokenizer.c */
struct tokenizer *tokenizer_alloc(size_t n_tokens);
int32_t piece_index_find(const struct tokenizer *tok, const char *text, size_t len);
void piece_index_build(struct tokenizer *tok);
void merge_index_init(struct merge_index *merges, size_t n_merges);
/* Adds a merge unless the pair is already listed, because the first listing wins. */
void merge_index_add(struct merge_index *merges, int32_t left, int32_t right, int32_t rank,
		     int32_t result);
bool merge_index_find(const struct merge_index *merges, int32_t left, int32_t right,
		      int32_t *rank, int32_t *result);
/* Returns the length of the UTF-8 character at text, or 1 for a broken sequence so that
 * byte fallback keeps every byte. */
size_t tokenizer_char_length(const char *text, size_t len);
uint32_t char_pack(const char *text, size_t len);
bool char_pair_known(const struct tokenizer *tok, uint32_t left, uint32_t right);
/* Fills byte_ids, byte_chars, the indexes and the decoded table from pieces and types.
 * Call it once the vocabulary and kind are final. */
void tokenizer_finish(struct tokenizer *tok);

/* tokenizer_bpe.c */
/* Encodes one segment (no added tokens inside) after normalization and splitting. */
int bpe_encode_segment(const struct tokenizer *tok, const char *text, size_t len,
		       struct id_list *out, struct error *err);
/* Stores the GPT-2 byte-level character of byte b as UTF-8 in out (at most 2 bytes) and
 * returns its length. */
size_t byte_level_char(unsigned b, char *out);
/* Returns the byte a byte-level character stands for, or -1 if cp is not one. */
int byte_level_byte(uint32_t cp);
void *byte_level_compile_regex(const char *pattern, size_t len, char *message, size_t size);
void byte_level_free_regex(void *regex);

#endif
