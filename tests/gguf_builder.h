/* Writes small GGUF files for the tests: a valid tiny llama model by default, with
 * switches that damage one thing at a time. Test-only code. */
#ifndef CATSCOPE_TESTS_GGUF_BUILDER_H
#define CATSCOPE_TESTS_GGUF_BUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

struct gguf_builder_options {
	uint32_t magic;            /* default "GGUF" */
	uint32_t version;          /* default 3 */
	uint64_t extra_tensor_count; /* added to the real tensor count */
	uint64_t extra_kv_count;     /* added to the real metadata count */
	const char *architecture;  /* default "llama" */
	const char *skip_tensor;   /* leave this tensor out */
	const char *rename_tensor; /* give this tensor the name of the previous one */
	const char *bad_name_tensor; /* give this tensor a name that is not UTF-8 */
	uint64_t q_rows;           /* attn_q rows (ne1); default the right value */
	uint32_t q_type;           /* attn_q ggml type; default F32 */
	uint64_t q_ne0_override;   /* if set, attn_q's ne0 (with ne1 = same) to overflow */
	uint64_t q_offset_add;     /* added to attn_q's offset */
	int overlap_q_k;           /* attn_k gets attn_q's offset */
	uint64_t key_length_override; /* the first key's length field */
	float nan_in_weights;      /* if nonzero, written into attn_q[0] */
	float inf_in_norm;         /* if nonzero, written into output_norm[0] */
	/* Raw metadata pairs appended after the usual ones, counted as extra_kv entries. */
	const unsigned char *extra_kv;
	size_t extra_kv_size;
	uint64_t extra_kv_entries;
	/* A raw tensor info appended after the usual ones and counted as one more tensor. */
	const unsigned char *extra_tensor;
	size_t extra_tensor_size;
};

enum { GB_DIM = 8, GB_HIDDEN = 16, GB_HEADS = 2, GB_KV_HEADS = 1, GB_VOCAB = 8, GB_LAYERS = 1 };

struct gb_buffer {
	unsigned char *data;
	size_t size;
	size_t capacity;
};

static void
gb_put(struct gb_buffer *b, const void *p, size_t n)
{
	if (b->size + n > b->capacity) {
		b->capacity = (b->size + n) * 2 + 64;
		b->data = realloc(b->data, b->capacity);
	}
	memcpy(b->data + b->size, p, n);
	b->size += n;
}

static void gb_u32(struct gb_buffer *b, uint32_t v) { gb_put(b, &v, 4); }
static void gb_u64(struct gb_buffer *b, uint64_t v) { gb_put(b, &v, 8); }

static void
gb_string(struct gb_buffer *b, const char *s)
{
	gb_u64(b, strlen(s));
	gb_put(b, s, strlen(s));
}

static void
gb_kv_string(struct gb_buffer *b, const char *key, const char *value)
{
	gb_string(b, key);
	gb_u32(b, 8);
	gb_string(b, value);
}

static void
gb_kv_u32(struct gb_buffer *b, const char *key, uint32_t value)
{
	gb_string(b, key);
	gb_u32(b, 4);
	gb_u32(b, value);
}

struct gb_tensor {
	char name[64];
	uint64_t ne[2];
	uint32_t n_dims;
	uint32_t type;
	uint64_t offset;
	uint64_t bytes;
};

/* Writes the file and returns its size, or 0 on failure. */
static size_t
gguf_builder_write(const char *path, const struct gguf_builder_options *o)
{
	static const char *const pieces[GB_VOCAB] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
						       "\xe2\x96\x81" "a", "ab" };
	struct gb_tensor t[32];
	int nt = 0;
	struct gb_buffer b = { 0 };
	uint64_t offset = 0;
	int kv_count = 0;
	FILE *f;

#define GB_ADD(nm, n0, n1, dims) do { \
		snprintf(t[nt].name, sizeof(t[nt].name), "%s", nm); \
		t[nt].ne[0] = n0; t[nt].ne[1] = n1; t[nt].n_dims = dims; t[nt].type = 0; \
		nt++; \
	} while (0)
	GB_ADD("token_embd.weight", GB_DIM, GB_VOCAB, 2);
	GB_ADD("output_norm.weight", GB_DIM, 1, 1);
	GB_ADD("blk.0.attn_norm.weight", GB_DIM, 1, 1);
	GB_ADD("blk.0.attn_q.weight", GB_DIM, o->q_rows ? o->q_rows : GB_DIM, 2);
	GB_ADD("blk.0.attn_k.weight", GB_DIM, GB_DIM / GB_HEADS * GB_KV_HEADS, 2);
	GB_ADD("blk.0.attn_v.weight", GB_DIM, GB_DIM / GB_HEADS * GB_KV_HEADS, 2);
	GB_ADD("blk.0.attn_output.weight", GB_DIM, GB_DIM, 2);
	GB_ADD("blk.0.ffn_norm.weight", GB_DIM, 1, 1);
	GB_ADD("blk.0.ffn_gate.weight", GB_DIM, GB_HIDDEN, 2);
	GB_ADD("blk.0.ffn_up.weight", GB_DIM, GB_HIDDEN, 2);
	GB_ADD("blk.0.ffn_down.weight", GB_HIDDEN, GB_DIM, 2);
#undef GB_ADD
	for (int i = 0; i < nt; i++) {
		if (strcmp(t[i].name, "blk.0.attn_q.weight") == 0) {
			if (o->q_type)
				t[i].type = o->q_type;
			if (o->q_ne0_override)
				t[i].ne[0] = t[i].ne[1] = o->q_ne0_override;
		}
		t[i].bytes = t[i].ne[0] * t[i].ne[1] * 4;
		t[i].offset = offset;
		offset += (t[i].bytes + 31) / 32 * 32;
	}
	for (int i = 0; i < nt; i++) {
		if (strcmp(t[i].name, "blk.0.attn_q.weight") == 0)
			t[i].offset += o->q_offset_add;
		if (o->overlap_q_k && strcmp(t[i].name, "blk.0.attn_k.weight") == 0)
			t[i].offset = t[i - 1].offset;
		if (o->rename_tensor && strcmp(t[i].name, o->rename_tensor) == 0 && i > 0)
			memcpy(t[i].name, t[i - 1].name, sizeof(t[i].name));
		if (o->bad_name_tensor && strcmp(t[i].name, o->bad_name_tensor) == 0)
			memcpy(t[i].name, "blk.0.\xff\xfe", 9);
	}

	int written = 0;
	for (int i = 0; i < nt; i++)
		written += !(o->skip_tensor && strcmp(t[i].name, o->skip_tensor) == 0);

	gb_u32(&b, o->magic ? o->magic : 0x46554747u);
	gb_u32(&b, o->version ? o->version : 3);
	gb_u64(&b, (uint64_t)written + o->extra_tensor_count + (o->extra_tensor_size > 0));
	kv_count = 13;
	gb_u64(&b, (uint64_t)kv_count + o->extra_kv_count + o->extra_kv_entries);
	/* The first key, with a length field that may be damaged. */
	gb_u64(&b, o->key_length_override ? o->key_length_override : strlen("general.architecture"));
	gb_put(&b, "general.architecture", strlen("general.architecture"));
	gb_u32(&b, 8);
	gb_string(&b, o->architecture ? o->architecture : "llama");
	gb_kv_u32(&b, "llama.embedding_length", GB_DIM);
	gb_kv_u32(&b, "llama.feed_forward_length", GB_HIDDEN);
	gb_kv_u32(&b, "llama.block_count", GB_LAYERS);
	gb_kv_u32(&b, "llama.attention.head_count", GB_HEADS);
	gb_kv_u32(&b, "llama.attention.head_count_kv", GB_KV_HEADS);
	gb_kv_u32(&b, "llama.context_length", 64);
	gb_kv_string(&b, "tokenizer.ggml.model", "llama");
	gb_kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
	gb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
	gb_kv_u32(&b, "tokenizer.ggml.unknown_token_id", 0);
	/* tokens, scores */
	gb_string(&b, "tokenizer.ggml.tokens");
	gb_u32(&b, 9);
	gb_u32(&b, 8);
	gb_u64(&b, GB_VOCAB);
	for (int i = 0; i < GB_VOCAB; i++)
		gb_string(&b, pieces[i]);
	gb_string(&b, "tokenizer.ggml.scores");
	gb_u32(&b, 9);
	gb_u32(&b, 6);
	gb_u64(&b, GB_VOCAB);
	for (int i = 0; i < GB_VOCAB; i++) {
		float s = -(float)i;

		gb_put(&b, &s, 4);
	}
	if (o->extra_kv_size > 0)
		gb_put(&b, o->extra_kv, o->extra_kv_size);

	for (int i = 0; i < nt; i++) {
		if (o->skip_tensor && strcmp(t[i].name, o->skip_tensor) == 0)
			continue;
		gb_string(&b, t[i].name);
		gb_u32(&b, t[i].n_dims);
		for (uint32_t d = 0; d < t[i].n_dims; d++)
			gb_u64(&b, t[i].ne[d]);
		gb_u32(&b, t[i].type);
		gb_u64(&b, t[i].offset);
	}
	if (o->extra_tensor_size > 0)
		gb_put(&b, o->extra_tensor, o->extra_tensor_size);
	while (b.size % 32 != 0)
		gb_put(&b, "", 1);
	/* Data: small deterministic values; norms are 1. */
	size_t data_start = b.size;
	for (uint64_t i = 0; i < offset / 4; i++) {
		float v = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;

		gb_put(&b, &v, 4);
	}
	for (int i = 0; i < nt; i++) {
		if (strstr(t[i].name, "norm") != NULL) {
			for (uint64_t j = 0; j < t[i].ne[0]; j++) {
				float one = 1.0f;

				memcpy(b.data + data_start + t[i].offset + j * 4, &one, 4);
			}
		}
		if (o->nan_in_weights != 0.0f && strcmp(t[i].name, "blk.0.attn_q.weight") == 0)
			memcpy(b.data + data_start + t[i].offset, &o->nan_in_weights, 4);
		if (o->inf_in_norm != 0.0f && strcmp(t[i].name, "output_norm.weight") == 0)
			memcpy(b.data + data_start + t[i].offset, &o->inf_in_norm, 4);
	}
	f = fopen(path, "wb");
	if (f == NULL)
		return 0;
	fwrite(b.data, 1, b.size, f);
	fclose(f);
	size_t size = b.size;
	free(b.data);
	return size;
}

#endif
