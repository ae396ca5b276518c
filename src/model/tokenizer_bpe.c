/* The BPE merge loop shared by both tokenizer kinds, the SentencePiece-style and
 * byte-level segment encoders, and the GPT-2 byte-to-character map.
 *
 * Merging keeps the symbols of a pre-token in a doubly linked list and the candidate
 * pairs in a binary heap. A pre-token of n characters then costs O(n log n), where
 * rescanning for the best pair after every merge would cost O(n^2). */
#include "config.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>
#include <utf8proc.h>

#include "catscope/alloc.h"
#include "catscope/tokenizer.h"
#include "tokenizer_impl.h"

struct bpe_symbol {
	uint32_t start; /* byte offset in the segment text */
	uint32_t len;   /* 0 once merged into its left neighbour */
	int32_t id;     /* -1 for text that has no piece (byte fallback at the end) */
	int32_t prev;
	int32_t next;
};

struct bpe_pair {
	double priority; /* lower merges first: -score or rank */
	uint32_t left;
	uint32_t right;
	uint32_t len; /* left.len + right.len when queued, to detect stale entries */
	int32_t result;
};

struct bpe_work {
	struct bpe_symbol *symbols;
	size_t n_symbols;
	size_t symbols_cap;
	struct bpe_pair *heap;
	size_t heap_n;
	size_t heap_cap;
};

static bool
pair_before(const struct bpe_pair *a, const struct bpe_pair *b)
{
	if (a->priority != b->priority)
		return a->priority < b->priority;
	/* Leftmost first on ties; the Mistral and Qwen3 reference ids depend on it. */
	return a->left < b->left;
}

static void
heap_push(struct bpe_work *w, const struct bpe_pair *pair)
{
	size_t i;

	if (w->heap_n == w->heap_cap) {
		w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
		w->heap = alloc_resize(w->heap, w->heap_cap, sizeof(*w->heap));
	}
	i = w->heap_n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!pair_before(pair, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = *pair;
}

static struct bpe_pair
heap_pop(struct bpe_work *w)
{
	struct bpe_pair top = w->heap[0];
	struct bpe_pair last = w->heap[--w->heap_n];
	size_t i = 0;

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= w->heap_n)
			break;
		if (child + 1 < w->heap_n && pair_before(&w->heap[child + 1], &w->heap[child]))
			child++;
		if (!pair_before(&w->heap[child], &last))
			break;
		w->heap[i] = w->heap[child];
		i = child;
	}
	if (w->heap_n > 0)
		w->heap[i] = last;
	return top;
}

static void
symbol_push(struct bpe_work *w, uint32_t start, uint32_t len, int32_t id)
{
	struct bpe_symbol *s;

	if (w->n_symbols == w->symbols_cap) {
		w->symbols_cap = w->symbols_cap ? w->symbols_cap * 2 : 64;
		w->symbols = alloc_resize(w->symbols, w->symbols_cap, sizeof(*w->symbols));
	}
	s = &w->symbols[w->n_symbols];
	s->start = start;
	s->len = len;
	s->id = id;
	s->prev = (int32_t)w->n_symbols - 1;
	s->next = (int32_t)w->n_symbols + 1;
	w->n_symbols++;
}

/* Returns the id a piece lookup may produce: pieces that stand for something other
 * than their text (control and byte tokens) never come out of merging. */
static int32_t
find_mergeable(const struct tokenizer *tok, const char *text, size_t len)
{
	int32_t id = piece_index_find(tok, text, len);

	if (id < 0 || tok->types[id] == TOKEN_TYPE_CONTROL || tok->types[id] == TOKEN_TYPE_BYTE)
		return -1;
	return id;
}

static void
queue_pair(const struct tokenizer *tok, const char *text, struct bpe_work *w, int32_t left,
	   int32_t right)
{
	const struct bpe_symbol *l, *r;
	struct bpe_pair pair;

	if (left < 0 || right < 0 || (size_t)right >= w->n_symbols)
		return;
	l = &w->symbols[left];
	r = &w->symbols[right];
	pair.left = (uint32_t)left;
	pair.right = (uint32_t)right;
	pair.len = l->len + r->len;
	if (tok->merge_mode == MERGE_BY_SCORE) {
		pair.result = find_mergeable(tok, text + l->start, pair.len);
		if (pair.result < 0)
			return;
		pair.priority = -(double)tok->scores[pair.result];
	} else {
		int32_t rank;

		if (l->id < 0 || r->id < 0 ||
		    !merge_index_find(&tok->merges, l->id, r->id, &rank, &pair.result))
			return;
		pair.priority = rank;
	}
	heap_push(w, &pair);
}

static void
merge_symbols(const struct tokenizer *tok, const char *text, struct bpe_work *w)
{
	w->heap_n = 0;
	if (w->n_symbols == 0)
		return;
	w->symbols[w->n_symbols - 1].next = -1;
	for (size_t i = 0; i + 1 < w->n_symbols; i++)
		queue_pair(tok, text, w, (int32_t)i, (int32_t)i + 1);

	while (w->heap_n > 0) {
		struct bpe_pair pair = heap_pop(w);
		struct bpe_symbol *l = &w->symbols[pair.left];
		struct bpe_symbol *r = &w->symbols[pair.right];

		/* Symbols only grow, so an unchanged total length means neither side merged
		 * with anything else since the pair was queued. */
		if (l->len == 0 || r->len == 0 || l->next != (int32_t)pair.right ||
		    l->len + r->len != pair.len)
			continue;
		l->len = pair.len;
		l->id = pair.result;
		l->next = r->next;
		if (r->next >= 0)
			w->symbols[r->next].prev = (int32_t)pair.left;
		r->len = 0;
		queue_pair(tok, text, w, l->prev, (int32_t)pair.left);
		queue_pair(tok, text, w, (int32_t)pair.left, l->next);
	}
}

static int
emit_bytes(const struct tokenizer *tok, const char *text, size_t len, struct id_list *out,
	   struct error *err)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)text[i];
		int32_t id = tok->byte_fallback ? tok->byte_ids[b] : -1;

		if (id < 0)
			id = tok->unknown_id;
		if (id < 0)
			return error_set(err, "tokenizer: byte 0x%02x has no byte token and the "
					 "vocabulary has no unknown token", b);
		/* NOTE: Hugging Face's fuse_unk folds a run of unknown tokens into one, but
		 * here every byte without a token gets its own unknown id. */
		id_list_push(out, id);
	}
	return 0;
}

static int
emit_symbols(const struct tokenizer *tok, const char *text, const struct bpe_work *w,
	     struct id_list *out, struct error *err)
{
	for (int32_t i = w->n_symbols ? 0 : -1; i >= 0; i = w->symbols[i].next) {
		const struct bpe_symbol *s = &w->symbols[i];

		if (s->id >= 0)
			id_list_push(out, s->id);
		else if (emit_bytes(tok, text + s->start, s->len, out, err) < 0)
			return -1;
	}
	return 0;
}

/* Applies the SentencePiece normalization: "▁" in front, spaces to "▁". */
static char *
spm_normalize(const struct tokenizer *tok, const char *text, size_t len, size_t *out_len)
{
	char *buf = alloc_array(len + 1, TOKENIZER_SPACE_MARK_LEN);
	size_t n = 0;

	if (tok->prepend_space_mark && len > 0) {
		memcpy(buf, TOKENIZER_SPACE_MARK, TOKENIZER_SPACE_MARK_LEN);
		n = TOKENIZER_SPACE_MARK_LEN;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ' && tok->replace_spaces) {
			memcpy(buf + n, TOKENIZER_SPACE_MARK, TOKENIZER_SPACE_MARK_LEN);
			n += TOKENIZER_SPACE_MARK_LEN;
		} else {
			buf[n++] = text[i];
		}
	}
	*out_len = n;
	return buf;
}

static int
spm_encode(const struct tokenizer *tok, const char *text, size_t len, struct bpe_work *w,
	   struct id_list *out, struct error *err)
{
	size_t n;
	char *norm = spm_normalize(tok, text, len, &n);
	int rc;

	if (n > UINT32_MAX / 2) {
		free(norm);
		return error_set(err, "tokenizer: text of %zu bytes is too long to encode", len);
	}
	w->n_symbols = 0;
	rc = 0;
	for (size_t i = 0; i < n && rc == 0;) {
		size_t c = tokenizer_char_length(norm + i, n - i);
		size_t next;

		symbol_push(w, (uint32_t)i, (uint32_t)c, find_mergeable(tok, norm + i, c));
		next = i + c;
		/* No piece spans these two characters, so the run so far is final. */
		if (next == n || !char_pair_known(tok, char_pack(norm + i, c),
						  char_pack(norm + next,
							    tokenizer_char_length(norm + next, n - next)))) {
			merge_symbols(tok, norm, w);
			rc = emit_symbols(tok, norm, w, out, err);
			w->n_symbols = 0;
		}
		i = next;
	}
	free(norm);
	return rc;
}

/* Encodes one pre-token of the byte-level kind: one symbol per byte, then merges. */
static int
byte_level_word(const struct tokenizer *tok, const char *text, size_t len, struct bpe_work *w,
		struct id_list *out, struct error *err)
{
	if (tok->ignore_merges) {
		char *mapped = alloc_array(len, 2);
		size_t n = 0;
		int32_t id;

		for (size_t i = 0; i < len; i++)
			n += byte_level_char((unsigned char)text[i], mapped + n);
		id = piece_index_find(tok, mapped, n);
		free(mapped);
		if (id >= 0) {
			id_list_push(out, id);
			return 0;
		}
	}
	w->n_symbols = 0;
	for (size_t i = 0; i < len; i++) {
		int32_t id = tok->byte_chars[(unsigned char)text[i]];

		if (id < 0)
			return error_set(err, "tokenizer: the vocabulary has no token for byte 0x%02x",
					 (unsigned char)text[i]);
		symbol_push(w, (uint32_t)i, 1, id);
	}
	merge_symbols(tok, text, w);
	return emit_symbols(tok, text, w, out, err);
}

static int
byte_level_encode(const struct tokenizer *tok, const char *text, size_t len,
		  struct bpe_work *w, struct id_list *out, struct error *err)
{
	pcre2_match_data *match;
	size_t pos = 0;
	int rc = 0;

	if (tok->split_regex == NULL)
		return byte_level_word(tok, text, len, w, out, err);

	match = pcre2_match_data_create_from_pattern(tok->split_regex, NULL);
	while (pos < len) {
		/* The caller has validated the UTF-8. Checking it again on every call would
		 * make the split quadratic in the text length. */
		int found = pcre2_match(tok->split_regex, (PCRE2_SPTR)text, len, pos,
					PCRE2_NO_UTF_CHECK, match, NULL);
		PCRE2_SIZE *ov;
		size_t start = len, end = len;

		if (found >= 0) {
			ov = pcre2_get_ovector_pointer(match);
			start = ov[0];
			end = ov[1];
		} else if (found != PCRE2_ERROR_NOMATCH) {
			rc = error_set(err, "tokenizer: the split regex failed with PCRE2 error %d "
				       "at byte %zu", found, pos);
			break;
		}
		/* Isolated split: the text between matches is a pre-token too. */
		if (start > pos && (rc = byte_level_word(tok, text + pos, start - pos, w, out,
							 err)) < 0)
			break;
		if (end == start) {
			/* An empty match would loop, so the rest becomes one pre-token. */
			if (start < len)
				rc = byte_level_word(tok, text + start, len - start, w, out, err);
			break;
		}
		if ((rc = byte_level_word(tok, text + start, end - start, w, out, err)) < 0)
			break;
		pos = end;
	}
	pcre2_match_data_free(match);
	return rc;
}

int
bpe_encode_segment(const struct tokenizer *tok, const char *text, size_t len,
		   struct id_list *out, struct error *err)
{
	struct bpe_work w = {0};
	utf8proc_uint8_t *nfc = NULL;
	char *prefixed = NULL;
	int rc;

	if (tok->kind == TOKENIZER_SPM) {
		rc = spm_encode(tok, text, len, &w, out, err);
		goto done;
	}
	/* Byte-level encoding could take any bytes, but the regex and NFC need UTF-8. */
	for (size_t i = 0; i < len;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t used = utf8proc_iterate((const utf8proc_uint8_t *)text + i,
							 (utf8proc_ssize_t)(len - i), &cp);

		if (used < 0) {
			rc = error_set(err, "tokenizer: text is not valid UTF-8 at byte %zu", i);
			goto done;
		}
		i += (size_t)used;
	}
	if (tok->nfc) {
		utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len,
						  &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);

		if (n < 0) {
			rc = error_set(err, "tokenizer: NFC normalization failed: %s",
				       utf8proc_errmsg(n));
			goto done;
		}
		text = (const char *)nfc;
		len = (size_t)n;
	}
	if (tok->prefix_space && len > 0 && text[0] != ' ') {
		prefixed = alloc_bytes(len + 1);
		prefixed[0] = ' ';
		memcpy(prefixed + 1, text, len);
		text = prefixed;
		len++;
	}
	rc = byte_level_encode(tok, text, len, &w, out, err);
done:
	free(nfc);
	free(prefixed);
	free(w.symbols);
	free(w.heap);
	return rc;
}

/* GPT-2's map gives the printable bytes '!'..'~', 0xa1..0xac and 0xae..0xff their own
 * code point. The other 68 bytes (0x00..0x20, 0x7f..0xa0, 0xad) take U+0100 onwards in
 * byte order. */
static uint32_t
byte_level_code_point(unsigned b)
{
	if (b <= 0x20)
		return 0x100 + b;
	if (b >= 0x7f && b <= 0xa0)
		return 0x100 + 33 + (b - 0x7f);
	if (b == 0xad)
		return 0x100 + 67;
	return b;
}

size_t
byte_level_char(unsigned b, char *out)
{
	uint32_t cp = byte_level_code_point(b);

	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	out[0] = (char)(0xc0 | (cp >> 6));
	out[1] = (char)(0x80 | (cp & 0x3f));
	return 2;
}

int
byte_level_byte(uint32_t cp)
{
	if (cp >= 0x100 && cp < 0x100 + 68) {
		uint32_t k = cp - 0x100;

		if (k <= 0x20)
			return (int)k;
		if (k < 67)
			return (int)(0x7f + (k - 33));
		return 0xad;
	}
	if (cp < 0x100 && byte_level_code_point(cp) == cp)
		return (int)cp;
	return -1;
}

void *
byte_level_compile_regex(const char *pattern, size_t len, char *message, size_t size)
{
	int code;
	PCRE2_SIZE offset;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP, &code,
				       &offset, NULL);

	if (re == NULL) {
		PCRE2_UCHAR text[256];

		pcre2_get_error_message(code, text, sizeof(text));
		snprintf(message, size, "%s at offset %zu", (const char *)text, (size_t)offset);
		return NULL;
	}
	/* JIT speeds up the split. Where JIT is unavailable, the interpreter runs. */
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

void
byte_level_free_regex(void *regex)
{
	pcre2_code_free(regex);
}
