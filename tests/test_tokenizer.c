/* Tests of the tokenizer against real vocabularies and real text: stories260K's tok512.bin
 * and tokenizer.json, and the Mistral and Qwen3 tokenizers with their reference ids. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <utf8proc.h>

#include "catscope/alloc.h"
#include "catscope/error.h"
#include "catscope/testutil.h"
#include "catscope/tokenizer.h"

/* Greedy output of stories260K from BOS (llama2.c semantics): 40 ids and their text. */
static const int32_t golden_ids[] = {
	403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
	426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
	295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
};
static const char golden_text[] =
	"Once upon a time, there was a little girl named Lily. She loved to play outside in the "
	"park. One day, she saw a big, r";

static char *
read_whole_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long size;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	buf = alloc_bytes((size_t)size + 1);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	buf[size] = '\0';
	fclose(f);
	*len = (size_t)size;
	return buf;
}

/* Builds the stories260K tokenizer from tok512.bin (llama2.c format) the way a GGUF
 * vocabulary would arrive: spaces spelled "▁", BOS/EOS as "<s>"/"</s>". */
static struct tokenizer *
load_tok512_vocab(bool with_types, int32_t bos_id, struct error *err)
{
	size_t size, pos = 4;
	char *file = read_whole_file(testutil_data_path("tok512.bin"), &size);
	char *pieces[512];
	size_t lengths[512];
	float scores[512];
	int32_t types[512];
	struct tokenizer_spm_vocab vocab = {
		.n_tokens = 512, .pieces = (const char *const *)pieces, .piece_lengths = lengths,
		.scores = scores, .types = with_types ? types : NULL, .bos_id = bos_id,
		.eos_id = 2, .unknown_id = 0, .add_bos = true,
	};
	struct tokenizer *tok;

	for (size_t id = 0; id < 512; id++) {
		int32_t len;
		char *piece;
		size_t n = 0;

		assert_true(pos + 8 <= size);
		memcpy(&scores[id], file + pos, 4);
		memcpy(&len, file + pos + 4, 4);
		pos += 8;
		assert_true(len >= 0 && pos + (size_t)len <= size);
		piece = alloc_bytes((size_t)len * 3 + 1);
		for (int32_t i = 0; i < len; i++) {
			if (file[pos + i] == ' ') {
				memcpy(piece + n, "\xe2\x96\x81", 3);
				n += 3;
			} else {
				piece[n++] = file[pos + i];
			}
		}
		piece[n] = '\0';
		pos += (size_t)len;
		if (id == 1)
			strcpy(piece, "<s>");
		else if (id == 2)
			strcpy(piece, "</s>");
		pieces[id] = piece;
		lengths[id] = strlen(piece);
		/* The token types GGUF stores for this vocabulary. */
		if (id == 0)
			types[id] = TOKEN_TYPE_UNKNOWN;
		else if (id <= 2)
			types[id] = TOKEN_TYPE_CONTROL;
		else if (id <= 258)
			types[id] = TOKEN_TYPE_BYTE;
		else
			types[id] = TOKEN_TYPE_NORMAL;
	}
	assert_int_equal(pos, size);
	tok = tokenizer_new_spm(&vocab, err);
	for (size_t id = 0; id < 512; id++)
		free(pieces[id]);
	free(file);
	return tok;
}

static struct tokenizer *
load_tok512(void)
{
	struct error err = {{0}};
	struct tokenizer *tok = load_tok512_vocab(false, 1, &err);

	if (tok == NULL)
		fail_msg("tokenizer_new_spm: %s", err.message);
	return tok;
}

static struct tokenizer *
load_hf(const char *name)
{
	struct error err = {{0}};
	struct tokenizer *tok = tokenizer_load_hf(testutil_data_path(name), &err);

	if (tok == NULL)
		fail_msg("tokenizer_load_hf(%s): %s", name, err.message);
	return tok;
}

static void
encode_ok(const struct tokenizer *tok, const char *text, size_t len, bool add_special,
	  int32_t **ids, size_t *n_ids)
{
	struct error err = {{0}};

	if (tokenizer_encode(tok, text, len, add_special, ids, n_ids, &err) < 0)
		fail_msg("tokenizer_encode: %s", err.message);
}

/* Asserts decode(encode(text)) == text and returns the number of tokens. */
static size_t
check_round_trip(const struct tokenizer *tok, const char *text, size_t len)
{
	int32_t *ids;
	size_t n_ids;
	char *back;

	encode_ok(tok, text, len, true, &ids, &n_ids);
	back = tokenizer_decode(tok, ids, n_ids);
	if (strlen(back) != len || memcmp(back, text, len) != 0)
		fail_msg("round trip differs for \"%.*s\": got \"%s\"", (int)len, text, back);
	free(back);
	free(ids);
	return n_ids;
}

static void
tokenizer_spm_golden_ids(void **state)
{
	struct tokenizer *tok = load_tok512();
	size_t n_golden = sizeof(golden_ids) / sizeof(golden_ids[0]);
	char *text = tokenizer_decode(tok, golden_ids, n_golden);
	int32_t *ids;
	size_t n_ids;

	assert_string_equal(text, golden_text);
	free(text);

	encode_ok(tok, golden_text, strlen(golden_text), true, &ids, &n_ids);
	assert_int_equal(n_ids, n_golden + 1);
	assert_int_equal(ids[0], 1);
	assert_memory_equal(ids + 1, golden_ids, sizeof(golden_ids));
	free(ids);

	assert_int_equal(tokenizer_vocab_size(tok), 512);
	assert_int_equal(tokenizer_bos_id(tok), 1);
	assert_int_equal(tokenizer_eos_id(tok), 2);
	assert_true(tokenizer_is_control(tok, 1));
	assert_int_equal(tokenizer_token_type(tok, 3), TOKEN_TYPE_BYTE);
	tokenizer_free(tok);
}

static void
tokenizer_spm_stream_matches_decode(void **state)
{
	struct tokenizer *tok = load_tok512();
	char streamed[512] = "";
	size_t n = 0;
	int32_t prev = 1;

	for (size_t i = 0; i < sizeof(golden_ids) / sizeof(golden_ids[0]); i++) {
		size_t len;
		const char *piece = tokenizer_decode_token(tok, prev, golden_ids[i], &len);

		memcpy(streamed + n, piece, len);
		n += len;
		prev = golden_ids[i];
	}
	streamed[n] = '\0';
	assert_string_equal(streamed, golden_text);
	assert_string_equal(tokenizer_token_piece(tok, 403), "\xe2\x96\x81" "Once");
	tokenizer_free(tok);
}

static void
tokenizer_spm_gguf_token_types(void **state)
{
	struct error err = {{0}};
	struct tokenizer *tok = load_tok512_vocab(true, 1, &err);
	static const char text[] = "Lily saw \xe7\x8c\xab, a cat.";
	const int32_t unknown_and_bos[] = {1, 0};
	int32_t *ids;
	size_t n_ids;
	char *back;

	assert_non_null(tok);
	assert_int_equal(tokenizer_token_type(tok, 0), TOKEN_TYPE_UNKNOWN);
	assert_int_equal(tokenizer_token_type(tok, 512), 0);
	assert_null(tokenizer_token_piece(tok, -1));

	/* U+732B has no piece, so its three UTF-8 bytes become byte tokens. */
	encode_ok(tok, text, strlen(text), false, &ids, &n_ids);
	assert_int_equal(ids[3], 0xe7 + 3);
	assert_int_equal(ids[4], 0x8c + 3);
	assert_int_equal(ids[5], 0xab + 3);
	free(ids);
	check_round_trip(tok, text, strlen(text));

	back = tokenizer_decode(tok, unknown_and_bos, 2);
	assert_string_equal(back, "<unk>");
	free(back);
	tokenizer_free(tok);

	assert_null(load_tok512_vocab(true, 512, &err));
	assert_string_equal(err.message, "tokenizer: BOS id 512 is outside the vocabulary of "
			    "512 tokens");
}

/* Calls fn on up to max_lines lines of a data file, taking every step-th line. */
static void
for_lines(const char *name, size_t step, size_t max_lines,
	  void (*fn)(const char *line, size_t len, void *ctx), void *ctx)
{
	size_t size, count = 0, index = 0;
	char *text = read_whole_file(testutil_data_path(name), &size);
	char *line = text;

	while (line < text + size && count < max_lines) {
		char *end = memchr(line, '\n', (size_t)(text + size - line));

		if (end == NULL)
			end = text + size;
		if (index++ % step == 0) {
			fn(line, (size_t)(end - line), ctx);
			count++;
		}
		line = end + 1;
	}
	free(text);
}

static void
round_trip_line(const char *line, size_t len, void *ctx)
{
	check_round_trip(ctx, line, len);
}

static void
tokenizer_spm_round_trips_real_text(void **state)
{
	struct tokenizer *tok = load_tok512();
	size_t size;
	char *text = read_whole_file(testutil_data_path("tinystories_train_sample.txt"), &size);

	/* A multi-line block, with newlines that become byte tokens. */
	assert_true(check_round_trip(tok, text, 8192) > 1000);
	free(text);
	for_lines("tinystories_train_sample.txt", 7, 300, round_trip_line, tok);
	/* Wikipedia lines bring accents, CJK and other characters outside the vocabulary. */
	for_lines("wiki.test.raw", 3, 600, round_trip_line, tok);
	tokenizer_free(tok);
}

struct compare_ctx {
	const struct tokenizer *a;
	const struct tokenizer *b;
	size_t lines;
	size_t tokens;
};

static void
compare_line(const char *line, size_t len, void *ptr)
{
	struct compare_ctx *ctx = ptr;
	int32_t *ids_a, *ids_b;
	size_t n_a, n_b;

	encode_ok(ctx->a, line, len, true, &ids_a, &n_a);
	encode_ok(ctx->b, line, len, true, &ids_b, &n_b);
	if (n_a != n_b || memcmp(ids_a, ids_b, n_a * sizeof(*ids_a)) != 0)
		fail_msg("spm and tokenizer.json ids differ for \"%.*s\"", (int)len, line);
	ctx->lines++;
	ctx->tokens += n_a;
	free(ids_a);
	free(ids_b);
}

static void
tokenizer_hf_stories_matches_spm(void **state)
{
	struct tokenizer *spm = load_tok512();
	struct tokenizer *hf = load_hf("hf-stories260K");
	struct compare_ctx ctx = {.a = spm, .b = hf};

	assert_int_equal(tokenizer_vocab_size(hf), 512);
	assert_int_equal(tokenizer_bos_id(hf), 1);
	assert_int_equal(tokenizer_eos_id(hf), 2);
	for_lines("tinystories_train_sample.txt", 5, 1000, compare_line, &ctx);
	for_lines("wiki.test.raw", 2, 1500, compare_line, &ctx);
	print_message("tokenizer.json and tok512.bin agree on %zu lines (%zu tokens)\n",
		      ctx.lines, ctx.tokens);
	assert_int_equal(ctx.lines, 2500);
	tokenizer_free(spm);
	tokenizer_free(hf);
}

static bool
contains(const char *text, const char *needle)
{
	return strstr(text, needle) != NULL;
}

/* Checks every reference-ids.jsonl line and returns how many matched. Round trips are
 * checked where the tokenizer keeps the text: no literal special tokens and, with NFC,
 * no change by normalization. */
static size_t
check_reference_ids(const struct tokenizer *tok, const char *dir, const char *const *specials,
		    bool nfc)
{
	char path[256];
	size_t size, matched = 0, total = 0, round_trips = 0;
	char *file, *line;

	snprintf(path, sizeof(path), "%s/reference-ids.jsonl", dir);
	file = read_whole_file(testutil_data_path(path), &size);
	for (line = strtok(file, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		json_error_t jerr;
		json_t *row = json_loads(line, 0, &jerr);
		const json_t *text = json_object_get(row, "text");
		const json_t *expected = json_object_get(row, "ids");
		int32_t *ids;
		size_t n_ids;
		bool same;
		char *back;
		bool lossless = true;

		assert_non_null(row);
		total++;
		encode_ok(tok, json_string_value(text), json_string_length(text), true, &ids, &n_ids);
		same = n_ids == json_array_size(expected);
		for (size_t i = 0; same && i < n_ids; i++)
			same = ids[i] == json_integer_value(json_array_get(expected, i));
		if (same)
			matched++;
		else
			print_message("%s: ids differ for \"%.60s\" (%zu ids, expected %zu)\n", dir,
				      json_string_value(text), n_ids, json_array_size(expected));

		for (size_t k = 0; specials[k] != NULL; k++)
			lossless = lossless && !contains(json_string_value(text), specials[k]);
		if (lossless) {
			char *want = alloc_strdup(json_string_value(text));

			if (nfc) {
				free(want);
				want = (char *)utf8proc_NFC((const utf8proc_uint8_t *)
							    json_string_value(text));
			}
			back = tokenizer_decode(tok, ids, n_ids);
			if (strcmp(back, want) != 0)
				fail_msg("%s: decode gives \"%s\" for \"%s\"", dir, back, want);
			round_trips++;
			free(back);
			free(want);
		}
		free(ids);
		json_decref(row);
	}
	print_message("%s: %zu of %zu reference lines match, %zu round trips checked\n", dir,
		      matched, total, round_trips);
	assert_int_equal(total, 60);
	free(file);
	return matched;
}

static void
tokenizer_mistral_reference_ids(void **state)
{
	static const char *const specials[] = {"<s>", "</s>", "<unk>", NULL};
	static const char broken[] = "bad \xff\xfe utf8";
	struct tokenizer *tok = load_hf("tokenizers/mistral");
	int32_t *ids;
	size_t n_ids;

	assert_int_equal(check_reference_ids(tok, "tokenizers/mistral", specials, false), 60);
	assert_int_equal(tokenizer_bos_id(tok), 1);
	assert_int_equal(tokenizer_vocab_size(tok), 32000);

	/* Broken UTF-8 goes through byte fallback: 0xff and 0xfe are ids 258 and 257. */
	encode_ok(tok, broken, strlen(broken), false, &ids, &n_ids);
	assert_int_equal(n_ids, 6);
	assert_int_equal(ids[2], 258);
	assert_int_equal(ids[3], 257);
	free(ids);
	check_round_trip(tok, broken, strlen(broken));

	/* Literal "<s>" becomes BOS, and the text after it gets its own "▁" prefix: 22557 is
	 * "▁Hello". */
	encode_ok(tok, "<s>Hello", 8, false, &ids, &n_ids);
	assert_int_equal(n_ids, 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 22557);
	assert_string_equal(tokenizer_token_piece(tok, 22557), "\xe2\x96\x81" "Hello");
	free(ids);
	tokenizer_free(tok);
}

static void
tokenizer_qwen3_reference_ids(void **state)
{
	static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", NULL};
	static const char chat[] = "<|im_start|><think>hi</think><|im_end|>";
	struct tokenizer *tok = load_hf("tokenizers/qwen3");
	struct error err = {{0}};
	int32_t *ids;
	size_t n_ids;
	char *back;

	assert_int_equal(check_reference_ids(tok, "tokenizers/qwen3", specials, true), 60);
	assert_int_equal(tokenizer_bos_id(tok), -1);
	assert_int_equal(tokenizer_eos_id(tok), 151645);
	assert_int_equal(tokenizer_vocab_size(tok), 151669);

	/* Added tokens match whole; decode drops the special ones and keeps the others. */
	encode_ok(tok, chat, strlen(chat), true, &ids, &n_ids);
	assert_true(n_ids >= 5);
	assert_int_equal(ids[0], 151644);
	assert_int_equal(ids[1], 151667);
	assert_int_equal(ids[n_ids - 2], 151668);
	assert_int_equal(ids[n_ids - 1], 151645);
	back = tokenizer_decode(tok, ids, n_ids);
	assert_string_equal(back, "<think>hi</think>");
	free(back);
	free(ids);

	/* The split regex and NFC need UTF-8, so broken input is an error with its offset. */
	assert_int_equal(tokenizer_encode(tok, "bad \xff", 5, false, &ids, &n_ids, &err), -1);
	assert_non_null(strstr(err.message, "not valid UTF-8 at byte 4"));
	tokenizer_free(tok);
}

/* Writes json as dir/tokenizer.json and asserts that loading fails with a message that
 * names the file and contains fragment. */
static void
expect_load_error(const char *dir, const char *json, const char *fragment)
{
	char path[4200];
	struct error err = {{0}};
	struct tokenizer *tok;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
	tok = tokenizer_load_hf(dir, &err);
	assert_null(tok);
	if (strstr(err.message, path) == NULL || strstr(err.message, fragment) == NULL)
		fail_msg("error \"%s\" should name %s and contain \"%s\"", err.message, path,
			 fragment);
}

static void
tokenizer_hf_rejects_malformed(void **state)
{
	const char *dir = *state;

	expect_load_error(dir, "{\"version\": \"1.0\"}", "\"model\"");
	expect_load_error(dir, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
	expect_load_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
			       " \"merges\": [\"a b\"]}}", "merges[0]");
	expect_load_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1,"
			       " \"ab\": 2}, \"merges\": [[\"a\", \"b\"], [\"a\"]]}}", "merges[1]");
	expect_load_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
			       " \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Metaspace\"}}",
			       "Metaspace");
	expect_load_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
			       " \"merges\": []}, \"normalizer\": {\"type\": \"NFKC\"}}", "NFKC");
	expect_load_error(dir, "{\"model\": ", "invalid JSON");
}

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
report_speed(const char *label, const struct tokenizer *tok, const char *text, size_t len)
{
	double start = seconds_now(), elapsed;
	int32_t *ids;
	size_t n_ids;
	char *back;

	encode_ok(tok, text, len, false, &ids, &n_ids);
	elapsed = seconds_now() - start;
	print_message("%s: wiki.test.raw, %zu bytes -> %zu tokens in %.3f s (%.0f tokens/s)\n",
		      label, len, n_ids, elapsed, (double)n_ids / elapsed);
	back = tokenizer_decode(tok, ids, n_ids);
	assert_int_equal(strlen(back), len);
	assert_memory_equal(back, text, len);
	free(back);
	free(ids);
}

static void
tokenizer_speed_on_wiki(void **state)
{
	size_t len;
	char *text = read_whole_file(testutil_data_path("wiki.test.raw"), &len);
	struct tokenizer *spm = load_tok512();
	struct tokenizer *hf = load_hf("hf-stories260K");

	report_speed("spm (tok512.bin)", spm, text, len);
	report_speed("tokenizer.json (hf-stories260K)", hf, text, len);
	tokenizer_free(spm);
	tokenizer_free(hf);

	hf = load_hf("tokenizers/mistral");
	report_speed("tokenizer.json (mistral)", hf, text, len);
	tokenizer_free(hf);
	hf = load_hf("tokenizers/qwen3");
	report_speed("tokenizer.json (qwen3)", hf, text, len);
	tokenizer_free(hf);
	free(text);
}

/* A FIFO named tokenizer.json (or tokenizer_config.json) is rejected at once; opening it
 * for reading would block forever. The alarm turns a hang into a failure. */
static void
tokenizer_hf_rejects_fifo(void **state)
{
	const char *names[] = { "tokenizer.json", "tokenizer_config.json" };

	for (int i = 0; i < 2; i++) {
		char dir[4200], path[8400], source[4200], command[17000];
		struct error err;
		struct tokenizer *tok;

		/* Each case gets an empty directory of its own inside the scratch directory. */
		snprintf(dir, sizeof(dir), "%s/case%d", (const char *)*state, i);
		assert_int_equal(mkdir(dir, 0700), 0);
		if (i == 1) {
			snprintf(source, sizeof(source), "%s", testutil_data_path("hf-stories260K/tokenizer.json"));
			snprintf(command, sizeof(command), "cp '%s' '%s/tokenizer.json'", source, dir);
			assert_int_equal(system(command), 0);
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(mkfifo(path, 0600), 0);
		alarm(10);
		tok = tokenizer_load_hf(dir, &err);
		alarm(0);
		assert_null(tok);
		assert_non_null(strstr(err.message, "not a regular file"));
		assert_non_null(strstr(err.message, names[i]));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tokenizer_spm_golden_ids),
		cmocka_unit_test(tokenizer_spm_stream_matches_decode),
		cmocka_unit_test(tokenizer_spm_round_trips_real_text),
		cmocka_unit_test(tokenizer_spm_gguf_token_types),
		cmocka_unit_test(tokenizer_hf_stories_matches_spm),
		cmocka_unit_test(tokenizer_mistral_reference_ids),
		cmocka_unit_test(tokenizer_qwen3_reference_ids),
		TESTUTIL_SCRATCH_TEST(tokenizer_hf_rejects_malformed),
		TESTUTIL_SCRATCH_TEST(tokenizer_hf_rejects_fifo),
		cmocka_unit_test(tokenizer_speed_on_wiki),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
