/* Tokenizer parts common to every kind: the vocabulary tables, hash indexes,
 * added-token splitting, decoding and accessors. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/tokenizer.h"
#include "tokenizer_impl.h"

void
id_list_push(struct id_list *list, int32_t id)
{
	if (list->n == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 64;
		list->ids = alloc_resize(list->ids, list->cap, sizeof(*list->ids));
	}
	list->ids[list->n++] = id;
}

struct tokenizer *
tokenizer_alloc(size_t n_tokens)
{
	struct tokenizer *tok = alloc_zeroed(1, sizeof(*tok));

	tok->n_tokens = n_tokens;
	tok->pieces = alloc_zeroed(n_tokens, sizeof(*tok->pieces));
	tok->piece_lengths = alloc_zeroed(n_tokens, sizeof(*tok->piece_lengths));
	tok->types = alloc_zeroed(n_tokens, sizeof(*tok->types));
	tok->decoded = alloc_zeroed(n_tokens, sizeof(*tok->decoded));
	tok->decoded_lengths = alloc_zeroed(n_tokens, sizeof(*tok->decoded_lengths));
	tok->bos_id = -1;
	tok->eos_id = -1;
	tok->unknown_id = -1;
	return tok;
}

void
tokenizer_free(struct tokenizer *tok)
{
	if (tok == NULL)
		return;
	for (size_t i = 0; i < tok->n_tokens; i++) {
		free(tok->pieces[i]);
		free(tok->decoded[i]);
	}
	free(tok->pieces);
	free(tok->piece_lengths);
	free(tok->scores);
	free(tok->types);
	free(tok->decoded);
	free(tok->decoded_lengths);
	free(tok->index.slots);
	free(tok->merges.keys);
	free(tok->merges.ranks);
	free(tok->merges.results);
	free(tok->char_pairs.keys);
	for (size_t i = 0; i < tok->n_added; i++)
		free(tok->added[i].text);
	free(tok->added);
	byte_level_free_regex(tok->split_regex);
	free(tok);
}

/* FNV-1a, which is enough for short keys that no adversary picks. */
static uint64_t
hash_bytes(const char *text, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)text[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t
hash_pair(uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return key;
}

static size_t
table_size_for(size_t n)
{
	size_t size = 16;

	/* At most half full, so that probe runs stay short. */
	while (size < 2 * n)
		size *= 2;
	return size;
}

void
piece_index_build(struct tokenizer *tok)
{
	size_t size = table_size_for(tok->n_tokens);

	tok->index.mask = size - 1;
	tok->index.slots = alloc_array(size, sizeof(*tok->index.slots));
	memset(tok->index.slots, 0xff, size * sizeof(*tok->index.slots));
	for (size_t id = 0; id < tok->n_tokens; id++) {
		size_t slot;

		if (tok->pieces[id] == NULL)
			continue;
		/* A duplicate spelling keeps the lowest id. */
		if (piece_index_find(tok, tok->pieces[id], tok->piece_lengths[id]) >= 0)
			continue;
		slot = hash_bytes(tok->pieces[id], tok->piece_lengths[id]) & tok->index.mask;
		while (tok->index.slots[slot] >= 0)
			slot = (slot + 1) & tok->index.mask;
		tok->index.slots[slot] = (int32_t)id;
	}
}

int32_t
piece_index_find(const struct tokenizer *tok, const char *text, size_t len)
{
	size_t slot = hash_bytes(text, len) & tok->index.mask;

	for (;;) {
		int32_t id = tok->index.slots[slot];

		if (id < 0)
			return -1;
		if (tok->piece_lengths[id] == len && memcmp(tok->pieces[id], text, len) == 0)
			return id;
		slot = (slot + 1) & tok->index.mask;
	}
}

void
merge_index_init(struct merge_index *merges, size_t n_merges)
{
	size_t size = table_size_for(n_merges);

	merges->mask = size - 1;
	merges->keys = alloc_array(size, sizeof(*merges->keys));
	merges->ranks = alloc_array(size, sizeof(*merges->ranks));
	merges->results = alloc_array(size, sizeof(*merges->results));
	for (size_t i = 0; i < size; i++)
		merges->keys[i] = MERGE_KEY_EMPTY;
}

void
merge_index_add(struct merge_index *merges, int32_t left, int32_t right, int32_t rank,
		int32_t result)
{
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	size_t slot = hash_pair(key) & merges->mask;

	while (merges->keys[slot] != MERGE_KEY_EMPTY) {
		if (merges->keys[slot] == key)
			return;
		slot = (slot + 1) & merges->mask;
	}
	merges->keys[slot] = key;
	merges->ranks[slot] = rank;
	merges->results[slot] = result;
}

bool
merge_index_find(const struct merge_index *merges, int32_t left, int32_t right, int32_t *rank,
		 int32_t *result)
{
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	size_t slot = hash_pair(key) & merges->mask;

	if (merges->keys == NULL)
		return false;
	while (merges->keys[slot] != MERGE_KEY_EMPTY) {
		if (merges->keys[slot] == key) {
			*rank = merges->ranks[slot];
			*result = merges->results[slot];
			return true;
		}
		slot = (slot + 1) & merges->mask;
	}
	return false;
}

uint32_t
char_pack(const char *text, size_t len)
{
	uint32_t packed = 0;

	for (size_t i = 0; i < len; i++)
		packed = packed << 8 | (unsigned char)text[i];
	return packed;
}

size_t
tokenizer_char_length(const char *text, size_t len)
{
	unsigned char c = (unsigned char)text[0];
	size_t n = 1;

	if (c >= 0xf0)
		n = 4;
	else if (c >= 0xe0)
		n = 3;
	else if (c >= 0xc0)
		n = 2;
	/* Broken UTF-8 goes byte by byte, so byte fallback keeps every byte. */
	if (n > len)
		return 1;
	for (size_t i = 1; i < n; i++) {
		if (((unsigned char)text[i] & 0xc0) != 0x80)
			return 1;
	}
	return n;
}

static void
char_pair_insert(struct char_pair_set *set, uint64_t key)
{
	size_t slot = hash_pair(key) & set->mask;

	while (set->keys[slot] != MERGE_KEY_EMPTY) {
		if (set->keys[slot] == key)
			return;
		slot = (slot + 1) & set->mask;
	}
	set->keys[slot] = key;
}

static void
char_pairs_build(struct tokenizer *tok)
{
	size_t total = 0;

	for (size_t id = 0; id < tok->n_tokens; id++)
		total += tok->piece_lengths[id];
	tok->char_pairs.mask = table_size_for(total) - 1;
	tok->char_pairs.keys = alloc_array(tok->char_pairs.mask + 1, sizeof(uint64_t));
	for (size_t i = 0; i <= tok->char_pairs.mask; i++)
		tok->char_pairs.keys[i] = MERGE_KEY_EMPTY;
	for (size_t id = 0; id < tok->n_tokens; id++) {
		const char *piece = tok->pieces[id];
		size_t len = tok->piece_lengths[id];
		size_t first = tokenizer_char_length(piece, len);

		/* The pair boundaries must be found the way the encoder finds characters,
		 * so broken UTF-8 splits byte by byte here as well. */
		for (size_t i = 0; len > 0 && i + first < len;) {
			size_t second = tokenizer_char_length(piece + i + first, len - i - first);
			uint64_t key = (uint64_t)char_pack(piece + i, first) << 32 |
				       char_pack(piece + i + first, second);

			char_pair_insert(&tok->char_pairs, key);
			i += first;
			first = second;
		}
	}
}

bool
char_pair_known(const struct tokenizer *tok, uint32_t left, uint32_t right)
{
	uint64_t key = (uint64_t)left << 32 | right;
	size_t slot = hash_pair(key) & tok->char_pairs.mask;

	while (tok->char_pairs.keys[slot] != MERGE_KEY_EMPTY) {
		if (tok->char_pairs.keys[slot] == key)
			return true;
		slot = (slot + 1) & tok->char_pairs.mask;
	}
	return false;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Returns the byte that a "<0xNN>" piece stands for, or -1 for any other piece. */
static int
byte_piece_value(const char *piece, size_t len)
{
	int hi, lo;

	if (len != 6 || memcmp(piece, "<0x", 3) != 0 || piece[5] != '>')
		return -1;
	hi = hex_digit(piece[3]);
	lo = hex_digit(piece[4]);
	if (hi < 0 || lo < 0)
		return -1;
	return hi * 16 + lo;
}

static uint32_t
utf8_decode_one(const unsigned char *s, size_t len, size_t *used)
{
	if (s[0] < 0x80 || len < 2) {
		*used = 1;
		return s[0];
	}
	if ((s[0] & 0xe0) == 0xc0) {
		*used = 2;
		return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
	}
	if ((s[0] & 0xf0) == 0xe0 && len >= 3) {
		*used = 3;
		return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
	}
	*used = 1;
	return s[0];
}

static void
fill_decoded_spm(struct tokenizer *tok, size_t id)
{
	const char *piece = tok->pieces[id];
	size_t len = tok->piece_lengths[id];
	char *out = alloc_bytes(len + 1);
	size_t n = 0;

	if (tok->types[id] == TOKEN_TYPE_BYTE) {
		out[n++] = (char)byte_piece_value(piece, len);
	} else if (tok->types[id] != TOKEN_TYPE_CONTROL) {
		for (size_t i = 0; i < len;) {
			if (len - i >= TOKENIZER_SPACE_MARK_LEN &&
			    memcmp(piece + i, TOKENIZER_SPACE_MARK, TOKENIZER_SPACE_MARK_LEN) == 0) {
				out[n++] = ' ';
				i += TOKENIZER_SPACE_MARK_LEN;
			} else {
				out[n++] = piece[i++];
			}
		}
	}
	out[n] = '\0';
	tok->decoded[id] = out;
	tok->decoded_lengths[id] = n;
}

static void
fill_decoded_byte_level(struct tokenizer *tok, size_t id)
{
	const char *piece = tok->pieces[id];
	size_t len = tok->piece_lengths[id];
	char *out = alloc_bytes(len + 1);
	size_t n = 0;

	if (tok->types[id] == TOKEN_TYPE_USER_DEFINED) {
		/* Added tokens are stored as plain text, not in the byte-level alphabet. */
		memcpy(out, piece, len);
		n = len;
	} else if (tok->types[id] != TOKEN_TYPE_CONTROL) {
		for (size_t i = 0; i < len;) {
			size_t used;
			uint32_t cp = utf8_decode_one((const unsigned char *)piece + i, len - i, &used);
			int b = byte_level_byte(cp);

			/* A character outside the map cannot come from byte-level encoding.
			 * It is copied so that nothing disappears silently. */
			if (b >= 0) {
				out[n++] = (char)b;
			} else {
				memcpy(out + n, piece + i, used);
				n += used;
			}
			i += used;
		}
	}
	out[n] = '\0';
	tok->decoded[id] = out;
	tok->decoded_lengths[id] = n;
}

void
tokenizer_finish(struct tokenizer *tok)
{
	char mapped[4];

	for (int b = 0; b < 256; b++) {
		tok->byte_ids[b] = -1;
		tok->byte_chars[b] = -1;
	}
	for (size_t id = 0; id < tok->n_tokens; id++) {
		int b;

		if (tok->pieces[id] == NULL) {
			tok->pieces[id] = alloc_strdup("");
			tok->types[id] = TOKEN_TYPE_UNUSED;
		}
		b = byte_piece_value(tok->pieces[id], tok->piece_lengths[id]);
		if (tok->types[id] == TOKEN_TYPE_BYTE && b >= 0 && tok->byte_ids[b] < 0)
			tok->byte_ids[b] = (int32_t)id;
	}
	piece_index_build(tok);
	if (tok->kind == TOKENIZER_SPM)
		char_pairs_build(tok);
	if (tok->kind == TOKENIZER_BYTE_LEVEL) {
		for (unsigned b = 0; b < 256; b++) {
			size_t n = byte_level_char(b, mapped);

			tok->byte_chars[b] = piece_index_find(tok, mapped, n);
		}
	}
	for (size_t id = 0; id < tok->n_tokens; id++) {
		if (tok->kind == TOKENIZER_SPM)
			fill_decoded_spm(tok, id);
		else
			fill_decoded_byte_level(tok, id);
	}
}

/* Finds the leftmost added token at or after text[from], longest first at one position
 * (Hugging Face's leftmost-longest rule). Returns its index in tok->added or -1. */
static ptrdiff_t
find_added(const struct tokenizer *tok, const char *text, size_t len, size_t from,
	   size_t *at)
{
	for (size_t i = from; i < len; i++) {
		if (!tok->added_starts[(unsigned char)text[i]])
			continue;
		for (size_t k = 0; k < tok->n_added; k++) {
			const struct added_token *a = &tok->added[k];

			if (a->len <= len - i && a->text[0] == text[i] &&
			    memcmp(text + i, a->text, a->len) == 0) {
				*at = i;
				return (ptrdiff_t)k;
			}
		}
	}
	return -1;
}

int
tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len, bool add_special,
		 int32_t **ids, size_t *n_ids, struct error *err)
{
	struct id_list out = {0};
	size_t pos = 0;

	if (add_special && tok->add_bos && tok->bos_id >= 0)
		id_list_push(&out, tok->bos_id);
	while (pos < len) {
		size_t at = len;
		ptrdiff_t k = tok->n_added ? find_added(tok, text, len, pos, &at) : -1;

		if (at > pos && bpe_encode_segment(tok, text + pos, at - pos, &out, err) < 0) {
			free(out.ids);
			return -1;
		}
		if (k < 0)
			break;
		id_list_push(&out, tok->added[k].id);
		pos = at + tok->added[k].len;
	}
	if (add_special && tok->add_eos && tok->eos_id >= 0)
		id_list_push(&out, tok->eos_id);
	if (out.ids == NULL)
		out.ids = alloc_bytes(sizeof(*out.ids));
	*ids = out.ids;
	*n_ids = out.n;
	return 0;
}

static bool
id_valid(const struct tokenizer *tok, int32_t id)
{
	return id >= 0 && (size_t)id < tok->n_tokens;
}

char *
tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n_ids)
{
	size_t total = 0, n = 0;
	bool at_start = true;
	char *out;

	for (size_t i = 0; i < n_ids; i++) {
		if (id_valid(tok, ids[i]))
			total += tok->decoded_lengths[ids[i]];
	}
	out = alloc_bytes(total + 1);
	for (size_t i = 0; i < n_ids; i++) {
		const char *piece;
		size_t len;

		if (!id_valid(tok, ids[i]) || tok->decoded_lengths[ids[i]] == 0)
			continue;
		piece = tok->decoded[ids[i]];
		len = tok->decoded_lengths[ids[i]];
		if (at_start && tok->strip_decoded_space && piece[0] == ' ') {
			piece++;
			len--;
		}
		at_start = false;
		memcpy(out + n, piece, len);
		n += len;
	}
	out[n] = '\0';
	return out;
}

const char *
tokenizer_decode_token(const struct tokenizer *tok, int32_t prev_id, int32_t id, size_t *len)
{
	const char *piece;

	if (!id_valid(tok, id)) {
		*len = 0;
		return "";
	}
	piece = tok->decoded[id];
	*len = tok->decoded_lengths[id];
	if (tok->strip_decoded_space && *len > 0 && piece[0] == ' ' &&
	    (prev_id < 0 || tokenizer_is_control(tok, prev_id))) {
		piece++;
		(*len)--;
	}
	return piece;
}

const char *
tokenizer_token_piece(const struct tokenizer *tok, int32_t id)
{
	return id_valid(tok, id) ? tok->pieces[id] : NULL;
}

int
tokenizer_token_type(const struct tokenizer *tok, int32_t id)
{
	return id_valid(tok, id) ? tok->types[id] : 0;
}

bool
tokenizer_is_control(const struct tokenizer *tok, int32_t id)
{
	return tokenizer_token_type(tok, id) == TOKEN_TYPE_CONTROL;
}

size_t
tokenizer_vocab_size(const struct tokenizer *tok)
{
	return tok->n_tokens;
}

int32_t
tokenizer_bos_id(const struct tokenizer *tok)
{
	return tok->bos_id;
}

int32_t
tokenizer_eos_id(const struct tokenizer *tok)
{
	return tok->eos_id;
}
