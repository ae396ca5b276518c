/* Loading a Hugging Face tokenizer.json (and tokenizer_config.json) into a tokenizer.
 *
 * Only the components that BPE models of the Llama/Mistral and GPT-2/Qwen families use
 * are accepted. Anything else is rejected by name rather than ignored, because a
 * silently skipped normalizer or pre-tokenizer gives plausible but wrong ids. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "catscope/alloc.h"
#include "catscope/jsonfile.h"
#include "catscope/tokenizer.h"
#include "tokenizer_impl.h"

/* The pattern ByteLevel uses when its use_regex is true (GPT-2's pre-tokenizer). */
static const char gpt2_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct hf_loader {
	const char *path;
	struct error *err;
	struct tokenizer *tok;
	bool have_byte_level;
	const char *split_pattern;
	size_t split_pattern_len;
	bool byte_level_regex;
	bool template_found;
};

static int
hf_fail(const struct hf_loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
hf_fail(const struct hf_loader *ld, const char *fmt, ...)
{
	char message[ERROR_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return error_set(ld->err, "%s: %s", ld->path, message);
}

/* Parses a JSON file; jsonfile_load rejects a FIFO instead of blocking on it. */
static json_t *
load_json_file(const struct hf_loader *ld, size_t flags)
{
	return jsonfile_load(ld->path, flags, ld->err);
}

static const char *
type_of(const json_t *component)
{
	const char *type = json_string_value(json_object_get(component, "type"));

	return type ? type : "(no type)";
}

/* Reads an optional boolean. A missing or null key gives fallback. */
static bool
get_bool(const json_t *object, const char *key, bool fallback)
{
	const json_t *value = json_object_get(object, key);

	return json_is_boolean(value) ? json_is_true(value) : fallback;
}

static bool
string_equals(const json_t *value, const char *expected)
{
	return json_is_string(value) && json_string_length(value) == strlen(expected) &&
	       memcmp(json_string_value(value), expected, strlen(expected)) == 0;
}

static int
parse_normalizer(struct hf_loader *ld, const json_t *norm)
{
	const char *type;

	if (norm == NULL || json_is_null(norm))
		return 0;
	type = type_of(norm);
	if (strcmp(type, "Sequence") == 0) {
		const json_t *list = json_object_get(norm, "normalizers");
		size_t i;
		json_t *item;

		if (!json_is_array(list))
			return hf_fail(ld, "normalizer Sequence has no \"normalizers\" array");
		json_array_foreach(list, i, item) {
			if (parse_normalizer(ld, item) < 0)
				return -1;
		}
		return 0;
	}
	if (strcmp(type, "Prepend") == 0) {
		if (!string_equals(json_object_get(norm, "prepend"), TOKENIZER_SPACE_MARK))
			return hf_fail(ld, "normalizer Prepend: only \"prepend\": \"\\u2581\" is "
				       "supported");
		ld->tok->prepend_space_mark = true;
		return 0;
	}
	if (strcmp(type, "Replace") == 0) {
		const json_t *pattern = json_object_get(norm, "pattern");

		if (!string_equals(json_object_get(pattern, "String"), " ") ||
		    !string_equals(json_object_get(norm, "content"), TOKENIZER_SPACE_MARK))
			return hf_fail(ld, "normalizer Replace: only \" \" -> \"\\u2581\" is "
				       "supported");
		ld->tok->replace_spaces = true;
		return 0;
	}
	if (strcmp(type, "NFC") == 0) {
		ld->tok->nfc = true;
		return 0;
	}
	return hf_fail(ld, "normalizer type \"%s\" is not supported (supported: Sequence, "
		       "Prepend, Replace, NFC)", type);
}

static int
parse_pre_tokenizer(struct hf_loader *ld, const json_t *pre)
{
	const char *type;

	if (pre == NULL || json_is_null(pre))
		return 0;
	type = type_of(pre);
	if (strcmp(type, "Sequence") == 0) {
		const json_t *list = json_object_get(pre, "pretokenizers");
		size_t i;
		json_t *item;

		if (!json_is_array(list))
			return hf_fail(ld, "pre_tokenizer Sequence has no \"pretokenizers\" array");
		json_array_foreach(list, i, item) {
			if (parse_pre_tokenizer(ld, item) < 0)
				return -1;
		}
		return 0;
	}
	if (strcmp(type, "ByteLevel") == 0) {
		ld->have_byte_level = true;
		ld->tok->prefix_space = get_bool(pre, "add_prefix_space", false);
		ld->byte_level_regex = get_bool(pre, "use_regex", true);
		return 0;
	}
	if (strcmp(type, "Split") == 0) {
		const json_t *pattern = json_object_get(pre, "pattern");
		const json_t *regex = json_object_get(pattern, "Regex");
		const char *behavior = json_string_value(json_object_get(pre, "behavior"));

		if (!json_is_string(regex))
			return hf_fail(ld, "pre_tokenizer Split: only a \"Regex\" pattern is "
				       "supported");
		if (behavior == NULL || strcmp(behavior, "Isolated") != 0 ||
		    get_bool(pre, "invert", false))
			return hf_fail(ld, "pre_tokenizer Split: behavior \"%s\"%s is not "
				       "supported (only Isolated, not inverted)",
				       behavior ? behavior : "(none)",
				       get_bool(pre, "invert", false) ? " with invert" : "");
		if (ld->split_pattern != NULL)
			return hf_fail(ld, "pre_tokenizer: more than one Split is not supported");
		ld->split_pattern = json_string_value(regex);
		ld->split_pattern_len = json_string_length(regex);
		return 0;
	}
	/* NOTE: Metaspace (newer Llama/Mistral conversions) is not supported yet. */
	return hf_fail(ld, "pre_tokenizer type \"%s\" is not supported (supported: Sequence, "
		       "ByteLevel, Split)", type);
}

static int
parse_template(struct hf_loader *ld, const json_t *post)
{
	const json_t *single = json_object_get(post, "single");
	const json_t *specials = json_object_get(post, "special_tokens");
	bool seen_sequence = false;
	size_t i;
	json_t *item;

	if (!json_is_array(single))
		return hf_fail(ld, "post_processor TemplateProcessing has no \"single\" array");
	json_array_foreach(single, i, item) {
		const json_t *special = json_object_get(item, "SpecialToken");
		const char *name;
		const json_t *ids;
		json_int_t id;

		if (json_object_get(item, "Sequence") != NULL) {
			seen_sequence = true;
			continue;
		}
		name = json_string_value(json_object_get(special, "id"));
		ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
		if (name == NULL || json_array_size(ids) != 1 ||
		    !json_is_integer(json_array_get(ids, 0)))
			return hf_fail(ld, "post_processor TemplateProcessing: single[%zu] is not a "
				       "special token with one id in \"special_tokens\"", i);
		id = json_integer_value(json_array_get(ids, 0));
		if (id < 0 || (size_t)id >= ld->tok->n_tokens)
			return hf_fail(ld, "post_processor TemplateProcessing: id %lld of \"%s\" is "
				       "outside the vocabulary", (long long)id, name);
		if ((!seen_sequence && ld->tok->add_bos) || (seen_sequence && ld->tok->add_eos))
			return hf_fail(ld, "post_processor TemplateProcessing: more than one special "
				       "token on one side of $A is not supported");
		if (!seen_sequence) {
			ld->tok->bos_id = (int32_t)id;
			ld->tok->add_bos = true;
		} else {
			ld->tok->eos_id = (int32_t)id;
			ld->tok->add_eos = true;
		}
	}
	ld->template_found = true;
	return 0;
}

static int
parse_post_processor(struct hf_loader *ld, const json_t *post)
{
	const char *type;

	if (post == NULL || json_is_null(post))
		return 0;
	type = type_of(post);
	if (strcmp(type, "Sequence") == 0) {
		const json_t *list = json_object_get(post, "processors");
		size_t i;
		json_t *item;

		json_array_foreach(list, i, item) {
			if (parse_post_processor(ld, item) < 0)
				return -1;
		}
		return 0;
	}
	/* ByteLevel only adjusts offsets, which catscope does not report. */
	if (strcmp(type, "ByteLevel") == 0)
		return 0;
	if (strcmp(type, "TemplateProcessing") == 0)
		return parse_template(ld, post);
	return hf_fail(ld, "post_processor type \"%s\" is not supported (supported: Sequence, "
		       "ByteLevel, TemplateProcessing)", type);
}

/* Finds the largest id in model.vocab and added_tokens, so that the table covers both. */
static int
count_tokens(struct hf_loader *ld, const json_t *vocab, const json_t *added, size_t *n_tokens)
{
	json_int_t max_id = -1;
	const char *key;
	json_t *value;
	size_t i;

	json_object_foreach((json_t *)vocab, key, value) {
		json_int_t id = json_integer_value(value);

		if (!json_is_integer(value) || id < 0 || id >= TOKENIZER_MAX_TOKENS)
			return hf_fail(ld, "model.vocab[\"%s\"]: id must be an integer from 0 to %d",
				       key, TOKENIZER_MAX_TOKENS - 1);
		if (id > max_id)
			max_id = id;
	}
	json_array_foreach((json_t *)added, i, value) {
		const json_t *id_value = json_object_get(value, "id");
		json_int_t id = json_integer_value(id_value);

		if (!json_is_integer(id_value) || id < 0 || id >= TOKENIZER_MAX_TOKENS ||
		    !json_is_string(json_object_get(value, "content")))
			return hf_fail(ld, "added_tokens[%zu]: needs an integer \"id\" from 0 to %d "
				       "and a string \"content\"", i, TOKENIZER_MAX_TOKENS - 1);
		if (id > max_id)
			max_id = id;
	}
	if (max_id < 0)
		return hf_fail(ld, "model.vocab is empty");
	*n_tokens = (size_t)max_id + 1;
	return 0;
}

static int
load_vocab(struct hf_loader *ld, const json_t *vocab)
{
	struct tokenizer *tok = ld->tok;
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)vocab, key, value) {
		size_t id = (size_t)json_integer_value(value);

		if (tok->pieces[id] != NULL)
			return hf_fail(ld, "model.vocab: id %zu is given to both \"%s\" and \"%s\"",
				       id, tok->pieces[id], key);
		tok->pieces[id] = alloc_strdup(key);
		tok->piece_lengths[id] = strlen(key);
		tok->types[id] = TOKEN_TYPE_NORMAL;
		if (tok->byte_fallback && tok->piece_lengths[id] == 6 &&
		    memcmp(key, "<0x", 3) == 0 && key[5] == '>')
			tok->types[id] = TOKEN_TYPE_BYTE;
	}
	return 0;
}

static int
load_added_tokens(struct hf_loader *ld, const json_t *added)
{
	struct tokenizer *tok = ld->tok;
	size_t i;
	json_t *item;

	tok->added = alloc_zeroed(json_array_size(added) + 1, sizeof(*tok->added));
	json_array_foreach((json_t *)added, i, item) {
		const json_t *content = json_object_get(item, "content");
		size_t id = (size_t)json_integer_value(json_object_get(item, "id"));
		size_t len = json_string_length(content);
		struct added_token *a;

		if (len == 0)
			return hf_fail(ld, "added_tokens[%zu]: \"content\" is empty", i);
		if (get_bool(item, "lstrip", false) || get_bool(item, "rstrip", false) ||
		    get_bool(item, "single_word", false))
			return hf_fail(ld, "added_tokens[%zu] (\"%s\"): lstrip, rstrip and "
				       "single_word are not supported", i, json_string_value(content));
		/* NOTE: tokens with "normalized": true should be matched in normalized text;
		 * they are matched in the raw text, which differs only when the normalizer
		 * changes the token's own characters. */
		free(tok->pieces[id]);
		tok->pieces[id] = alloc_strndup(json_string_value(content), len);
		tok->piece_lengths[id] = len;
		tok->types[id] = get_bool(item, "special", false) ? TOKEN_TYPE_CONTROL
								  : TOKEN_TYPE_USER_DEFINED;
		a = &tok->added[tok->n_added++];
		a->text = alloc_strndup(json_string_value(content), len);
		a->len = len;
		a->id = (int32_t)id;
		tok->added_starts[(unsigned char)a->text[0]] = true;
	}
	return 0;
}

static int
compare_added_longest_first(const void *a, const void *b)
{
	const struct added_token *x = a, *y = b;

	return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

/* Splits one merges entry, "left right" or ["left", "right"], into its two pieces. */
static int
merge_parts(struct hf_loader *ld, size_t index, const json_t *entry, char **left,
	    char **right)
{
	if (json_is_string(entry)) {
		const char *text = json_string_value(entry);
		const char *space = strchr(text, ' ');

		if (space == NULL || strchr(space + 1, ' ') != NULL)
			return hf_fail(ld, "merges[%zu]: \"%s\" is not two pieces separated by one "
				       "space", index, text);
		*left = alloc_strndup(text, (size_t)(space - text));
		*right = alloc_strdup(space + 1);
		return 0;
	}
	if (json_array_size(entry) == 2 && json_is_string(json_array_get(entry, 0)) &&
	    json_is_string(json_array_get(entry, 1))) {
		*left = alloc_strdup(json_string_value(json_array_get(entry, 0)));
		*right = alloc_strdup(json_string_value(json_array_get(entry, 1)));
		return 0;
	}
	return hf_fail(ld, "merges[%zu]: expected a string \"left right\" or an array of two "
		       "strings", index);
}

static int
load_merges(struct hf_loader *ld, const json_t *merges)
{
	struct tokenizer *tok = ld->tok;
	size_t i;
	json_t *entry;

	if (!json_is_array(merges))
		return hf_fail(ld, "model.merges is missing or not an array");
	if (json_array_size(merges) > INT32_MAX)
		return hf_fail(ld, "model.merges has too many entries");
	merge_index_init(&tok->merges, json_array_size(merges));
	json_array_foreach((json_t *)merges, i, entry) {
		char *left = NULL, *right = NULL, *joined;
		int32_t left_id, right_id, result;
		size_t left_len, right_len;

		if (merge_parts(ld, i, entry, &left, &right) < 0)
			return -1;
		left_len = strlen(left);
		right_len = strlen(right);
		joined = alloc_bytes(left_len + right_len + 1);
		memcpy(joined, left, left_len);
		memcpy(joined + left_len, right, right_len + 1);
		left_id = piece_index_find(tok, left, left_len);
		right_id = piece_index_find(tok, right, right_len);
		result = piece_index_find(tok, joined, left_len + right_len);
		if (left_id < 0 || right_id < 0 || result < 0) {
			hf_fail(ld, "merges[%zu]: \"%s\" is not in model.vocab",
				i, left_id < 0 ? left : right_id < 0 ? right : joined);
			free(left);
			free(right);
			free(joined);
			return -1;
		}
		merge_index_add(&tok->merges, left_id, right_id, (int32_t)i, result);
		free(left);
		free(right);
		free(joined);
	}
	return 0;
}

/* Returns the id of a tokenizer_config.json token entry (a string or an AddedToken
 * object with "content"), -1 when it is null or absent, or -2 when it is unknown. */
static int32_t
config_token_id(const struct tokenizer *tok, const json_t *entry)
{
	const json_t *content = json_is_object(entry) ? json_object_get(entry, "content") : entry;
	int32_t id;

	if (!json_is_string(content))
		return -1;
	id = piece_index_find(tok, json_string_value(content), json_string_length(content));
	return id >= 0 ? id : -2;
}

static int
load_config(struct hf_loader *ld, const char *dir)
{
	struct tokenizer *tok = ld->tok;
	char path[4096];
	json_t *root;
	int32_t bos, eos;

	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	/* The config is optional. access() does not open the file, so a FIFO cannot block
	 * here, and load_json_file then rejects anything but a regular file. */
	if (access(path, F_OK) != 0)
		return 0;
	ld->path = path;
	/* Some configs store model_max_length as 1e30 written out, beyond int64. */
	root = load_json_file(ld, JSON_DECODE_INT_AS_REAL);
	if (root == NULL)
		return -1;

	bos = config_token_id(tok, json_object_get(root, "bos_token"));
	eos = config_token_id(tok, json_object_get(root, "eos_token"));
	if (bos == -2 || eos == -2) {
		json_decref(root);
		return hf_fail(ld, "%s is not a token of tokenizer.json",
			       bos == -2 ? "bos_token" : "eos_token");
	}
	if (bos >= 0)
		tok->bos_id = bos;
	if (eos >= 0)
		tok->eos_id = eos;
	/* The post-processor is what Hugging Face's fast tokenizers run; the flags only
	 * decide when tokenizer.json has no template. */
	if (!ld->template_found) {
		tok->add_bos = get_bool(root, "add_bos_token", false) && tok->bos_id >= 0;
		tok->add_eos = get_bool(root, "add_eos_token", false) && tok->eos_id >= 0;
	}
	json_decref(root);
	return 0;
}

static int
load_model(struct hf_loader *ld, const json_t *root)
{
	struct tokenizer *tok = ld->tok;
	const json_t *model = json_object_get(root, "model");
	const json_t *prefix = json_object_get(model, "continuing_subword_prefix");
	const json_t *suffix = json_object_get(model, "end_of_word_suffix");
	const json_t *dropout = json_object_get(model, "dropout");
	const json_t *unk = json_object_get(model, "unk_token");

	if (dropout != NULL && !json_is_null(dropout))
		return hf_fail(ld, "model.dropout is set; BPE dropout is not supported");
	if ((json_is_string(prefix) && json_string_length(prefix) > 0) ||
	    (json_is_string(suffix) && json_string_length(suffix) > 0))
		return hf_fail(ld, "model.continuing_subword_prefix and end_of_word_suffix are "
			       "not supported");
	if (parse_normalizer(ld, json_object_get(root, "normalizer")) < 0 ||
	    parse_pre_tokenizer(ld, json_object_get(root, "pre_tokenizer")) < 0)
		return -1;
	if (ld->split_pattern != NULL && !ld->have_byte_level)
		return hf_fail(ld, "pre_tokenizer Split without ByteLevel is not supported");

	tok->kind = ld->have_byte_level ? TOKENIZER_BYTE_LEVEL : TOKENIZER_SPM;
	tok->merge_mode = MERGE_BY_RANK;
	tok->ignore_merges = get_bool(model, "ignore_merges", false);
	tok->strip_decoded_space = tok->kind == TOKENIZER_SPM && tok->prepend_space_mark;
	if (ld->have_byte_level && (ld->split_pattern != NULL || ld->byte_level_regex)) {
		char message[512];
		const char *pattern = ld->split_pattern ? ld->split_pattern : gpt2_pattern;
		size_t len = ld->split_pattern ? ld->split_pattern_len : strlen(gpt2_pattern);

		tok->split_regex = byte_level_compile_regex(pattern, len, message, sizeof(message));
		if (tok->split_regex == NULL)
			return hf_fail(ld, "pre_tokenizer regex does not compile: %s", message);
	}

	tokenizer_finish(tok);
	if (json_is_string(unk)) {
		tok->unknown_id = piece_index_find(tok, json_string_value(unk),
						   json_string_length(unk));
		if (tok->unknown_id < 0)
			return hf_fail(ld, "model.unk_token \"%s\" is not in model.vocab",
				       json_string_value(unk));
	}
	if (load_merges(ld, json_object_get(model, "merges")) < 0)
		return -1;
	return parse_post_processor(ld, json_object_get(root, "post_processor"));
}

struct tokenizer *
tokenizer_load_hf(const char *dir, struct error *err)
{
	char path[4096];
	struct hf_loader ld = {.path = path, .err = err};
	json_t *root, *model, *vocab, *added;
	const char *type;
	size_t n_tokens = 0;

	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	root = load_json_file(&ld, 0);
	if (root == NULL)
		return NULL;
	model = json_object_get(root, "model");
	vocab = json_object_get(model, "vocab");
	added = json_object_get(root, "added_tokens");
	type = json_string_value(json_object_get(model, "type"));
	if (!json_is_object(model)) {
		hf_fail(&ld, "missing \"model\" object");
		goto fail;
	}
	if (type == NULL || strcmp(type, "BPE") != 0) {
		hf_fail(&ld, "model.type \"%s\" is not supported; only BPE is",
			type ? type : "(missing)");
		goto fail;
	}
	if (!json_is_object(vocab)) {
		hf_fail(&ld, "model.vocab is missing or not an object");
		goto fail;
	}
	if (added != NULL && !json_is_array(added)) {
		hf_fail(&ld, "added_tokens is not an array");
		goto fail;
	}
	if (count_tokens(&ld, vocab, added, &n_tokens) < 0)
		goto fail;

	ld.tok = tokenizer_alloc(n_tokens);
	ld.tok->byte_fallback = get_bool(model, "byte_fallback", false);
	if (load_vocab(&ld, vocab) < 0 || load_added_tokens(&ld, added) < 0 ||
	    load_model(&ld, root) < 0 || load_config(&ld, dir) < 0)
		goto fail;
	qsort(ld.tok->added, ld.tok->n_added, sizeof(*ld.tok->added),
	      compare_added_longest_first);
	json_decref(root);
	return ld.tok;
fail:
	tokenizer_free(ld.tok);
	json_decref(root);
	return NULL;
}
