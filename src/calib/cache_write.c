/* Writing the calibration cache: records first, then the header and index in the
 * space reserved for them at the start, all through one atomic file. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/calib_cache.h"
#include "catscope/hash.h"
#include "cache_format.h"

static uint64_t
cache_provenance_size(const struct calib_provenance *p)
{
	uint64_t size = CACHE_PROVENANCE_FIXED;

	for (int i = 0; i < p->n_texts; i++)
		size += CACHE_TEXT_FIXED + strlen(p->texts[i].name);
	return size;
}

/* Encodes one site's arrays into the raw record layout; caller frees. */
static unsigned char *
cache_encode_record(const struct site_stats *s, uint64_t *raw_size)
{
	uint64_t d = (uint64_t)s->dim;
	unsigned char *raw, *p;

	*raw_size = cache_record_raw_size(d, (uint64_t)s->n_sample);
	raw = alloc_bytes(*raw_size > 0 ? *raw_size : 1);
	p = raw;
	for (uint64_t i = 0; i < d; i++, p += 8)
		cache_put_f64(p, s->mean[i]);
	for (uint64_t i = 0; i < d; i++, p += 4)
		cache_put_f32(p, s->absmax[i]);
	for (uint64_t i = 0; i < d; i++) {
		for (uint64_t j = i; j < d; j++, p += 4)
			cache_put_f32(p, (float)s->second_moment[i * d + j]);
	}
	for (uint64_t i = 0; i < (uint64_t)s->n_sample * d; i++, p += 4)
		cache_put_f32(p, s->sample[i]);
	return raw;
}

static void
cache_encode_entry(unsigned char *e, int block, enum site_kind kind, const struct site_stats *s,
		   uint64_t offset, uint64_t compressed, uint64_t raw, uint64_t checksum)
{
	int channel = 0;

	for (int i = 1; i < s->dim; i++) {
		if (s->absmax[i] > s->absmax[channel])
			channel = i;
	}
	cache_put_u32(e + CACHE_ENTRY_BLOCK, (uint32_t)block);
	cache_put_u32(e + CACHE_ENTRY_KIND, (uint32_t)kind);
	cache_put_u32(e + CACHE_ENTRY_DIM, (uint32_t)s->dim);
	cache_put_u32(e + CACHE_ENTRY_N_SAMPLE, (uint32_t)s->n_sample);
	cache_put_u64(e + CACHE_ENTRY_OFFSET, offset);
	cache_put_u64(e + CACHE_ENTRY_COMPRESSED, compressed);
	cache_put_u64(e + CACHE_ENTRY_RAW, raw);
	cache_put_u64(e + CACHE_ENTRY_CHECKSUM, checksum);
	cache_put_u64(e + CACHE_ENTRY_N_TOKENS, s->n_tokens);
	cache_put_u64(e + CACHE_ENTRY_NONFINITE, s->nonfinite);
	cache_put_f64(e + CACHE_ENTRY_SQ_NORM, s->mean_sq_norm);
	cache_put_f64(e + CACHE_ENTRY_SQ_RANGE_SYM, s->mean_sq_range_sym);
	cache_put_f64(e + CACHE_ENTRY_SQ_RANGE_ASYM, s->mean_sq_range_asym);
	cache_put_f32(e + CACHE_ENTRY_MAX_ABSMAX, s->dim > 0 ? s->absmax[channel] : 0.0f);
	cache_put_u32(e + CACHE_ENTRY_MAX_ABSMAX_CHANNEL, (uint32_t)channel);
}

/* Fills the fixed header and the provenance; the index and checksum come later. */
static void
cache_encode_header(unsigned char *h, const struct calib_result *r, uint32_t header_size,
		    uint32_t provenance_size)
{
	const struct calib_provenance *p = &r->provenance;
	const struct model_config *c = &p->config;
	const int shapes[8] = { c->dim, c->hidden_dim, c->n_layers, c->n_heads,
				c->n_kv_heads, c->head_dim, c->vocab_size, c->context_length };
	unsigned char *q = h + CACHE_FIXED_SIZE;

	memcpy(h, CACHE_MAGIC, 8);
	cache_put_u32(h + 8, CACHE_VERSION);
	cache_put_u32(h + 12, header_size);
	cache_put_u64(h + 16, p->fingerprint);
	for (int i = 0; i < 8; i++)
		cache_put_u32(h + 24 + 4 * i, (uint32_t)shapes[i]);
	cache_put_u32(h + 56, (uint32_t)(r->n_blocks * SITE_KIND_COUNT));
	cache_put_u32(h + 60, provenance_size);

	cache_put_u64(q, p->n_tokens);
	cache_put_u32(q + 8, (uint32_t)p->ctx);
	cache_put_u32(q + 12, (uint32_t)p->n_windows);
	cache_put_u64(q + 16, p->seed);
	cache_put_u32(q + 24, (uint32_t)p->sample_size);
	cache_put_u32(q + 28, (uint32_t)p->n_texts);
	memset(q + 32, 0, 16);
	memcpy(q + 32, p->version, strnlen(p->version, 15));
	q += CACHE_PROVENANCE_FIXED;
	for (int i = 0; i < p->n_texts; i++) {
		size_t len = strlen(p->texts[i].name);

		cache_put_u64(q, p->texts[i].size);
		cache_put_u64(q + 8, p->texts[i].hash);
		cache_put_u32(q + 16, (uint32_t)len);
		memcpy(q + CACHE_TEXT_FIXED, p->texts[i].name, len);
		q += CACHE_TEXT_FIXED + len;
	}
}

/* Compresses one record with the zstd frame checksum on, so decompression checks the
 * raw bytes too. Returns the compressed size, or 0 with err set. */
static size_t
cache_compress(ZSTD_CCtx *cctx, const unsigned char *raw, size_t raw_size, unsigned char **out,
	       const char *path, struct error *err)
{
	size_t bound = ZSTD_compressBound(raw_size);
	size_t size;

	*out = alloc_bytes(bound);
	size = ZSTD_compress2(cctx, *out, bound, raw, raw_size);
	if (ZSTD_isError(size)) {
		error_set(err, "%s: zstd compression failed: %s", path, ZSTD_getErrorName(size));
		return 0;
	}
	return size;
}

static int
cache_check_result(const char *path, const struct calib_result *r, struct error *err)
{
	const struct calib_provenance *p = &r->provenance;

	if (r->n_blocks <= 0 || r->n_blocks * SITE_KIND_COUNT > CACHE_MAX_SITES)
		return error_set(err, "%s: cannot write %d blocks (at most %d)", path, r->n_blocks,
				 CACHE_MAX_SITES / SITE_KIND_COUNT);
	if (cache_provenance_size(p) > CACHE_MAX_PROVENANCE)
		return error_set(err, "%s: the text file names exceed %u bytes; pass fewer files",
				 path, CACHE_MAX_PROVENANCE);
	for (int i = 0; i < p->n_texts; i++) {
		if (strlen(p->texts[i].name) > CACHE_MAX_NAME)
			return error_set(err, "%s: text file name longer than %d bytes: %.40s...", path,
					 CACHE_MAX_NAME, p->texts[i].name);
	}
	return 0;
}

int
calib_cache_write(const char *path, const struct calib_result *r, struct error *err)
{
	int n_sites = r->n_blocks * SITE_KIND_COUNT;
	uint32_t provenance_size, index_offset, header_size;
	unsigned char *header;
	uint64_t offset;
	struct atomic_file file;
	ZSTD_CCtx *cctx;
	int rc = 0;

	if (cache_check_result(path, r, err) != 0)
		return -1;
	provenance_size = (uint32_t)cache_provenance_size(&r->provenance);
	index_offset = CACHE_FIXED_SIZE + provenance_size;
	header_size = index_offset + (uint32_t)n_sites * CACHE_INDEX_ENTRY + CACHE_CHECKSUM_SIZE;
	header = alloc_zeroed(header_size, 1);
	cache_encode_header(header, r, header_size, provenance_size);

	if (atomic_file_open(&file, path, err) != 0) {
		free(header);
		return -1;
	}
	cctx = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, CACHE_ZSTD_LEVEL);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);

	/* Reserve the header; it is written last, once every record's place is known. */
	if (fwrite(header, 1, header_size, file.stream) != header_size)
		rc = error_set(err, "%s: writing failed: %s", path, strerror(errno));
	offset = header_size;
	for (int s = 0; s < n_sites && rc == 0; s++) {
		const struct site_stats *stats = &r->sites[s];
		uint64_t raw_size;
		unsigned char *raw, *packed;
		size_t packed_size;

		if (atomic_interrupted()) {
			rc = error_set(err, "%s: writing interrupted; the previous file, if any, is "
				       "unchanged", path);
			break;
		}
		raw = cache_encode_record(stats, &raw_size);
		packed_size = cache_compress(cctx, raw, raw_size, &packed, path, err);
		free(raw);
		if (packed_size == 0) {
			rc = -1;
		} else if (fwrite(packed, 1, packed_size, file.stream) != packed_size) {
			rc = error_set(err, "%s: writing failed: %s", path, strerror(errno));
		} else {
			cache_encode_entry(header + index_offset + (size_t)s * CACHE_INDEX_ENTRY,
					   s / SITE_KIND_COUNT, (enum site_kind)(s % SITE_KIND_COUNT),
					   stats, offset, packed_size, raw_size,
					   hash_update(HASH_SEED, packed, packed_size));
			offset += packed_size;
		}
		free(packed);
	}
	ZSTD_freeCCtx(cctx);

	if (rc == 0) {
		cache_put_u64(header + header_size - CACHE_CHECKSUM_SIZE,
			      hash_update(HASH_SEED, header, header_size - CACHE_CHECKSUM_SIZE));
		if (fseeko(file.stream, 0, SEEK_SET) != 0 ||
		    fwrite(header, 1, header_size, file.stream) != header_size)
			rc = error_set(err, "%s: writing the header failed: %s", path, strerror(errno));
	}
	free(header);
	if (rc == 0 && atomic_interrupted())
		rc = error_set(err, "%s: writing interrupted; the previous file, if any, is unchanged",
			       path);
	if (rc == 0)
		return atomic_file_commit(&file, err);
	atomic_file_abort(&file);
	return -1;
}
