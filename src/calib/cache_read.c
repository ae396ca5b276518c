/* Reading the calibration cache: header and index at open, records on demand. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "catscope/alloc.h"
#include "catscope/calib_cache.h"
#include "catscope/hash.h"
#include "cache_format.h"

struct cache_entry {
	struct calib_site_summary summary;
	uint64_t offset;
	uint64_t checksum;
	int loaded;
	struct site_stats stats;
};

struct calib_cache {
	char *path;
	int fd;
	bool has_model;             /* opened with a model, which bounds each dimension */
	int n_blocks;
	struct calib_provenance provenance;
	struct cache_entry *entries; /* n_blocks x SITE_KIND_COUNT */
};

static int
cache_read_at(const struct calib_cache *cache, void *buffer, uint64_t size, uint64_t offset,
	      struct error *err)
{
	unsigned char *p = buffer;

	while (size > 0) {
		ssize_t got = pread(cache->fd, p, size, (off_t)offset);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return error_set(err, "%s: reading failed at byte %" PRIu64 ": %s", cache->path,
					 offset, strerror(errno));
		if (got == 0)
			return error_set(err, "%s: the file ends early at byte %" PRIu64
					 "; it is truncated, recalibrate", cache->path, offset);
		p += got;
		size -= (uint64_t)got;
		offset += (uint64_t)got;
	}
	return 0;
}

static const char *
cache_entry_label(const struct cache_entry *e, char *buffer, size_t size)
{
	return calib_site_label(buffer, size, e->summary.block, e->summary.kind);
}

static int
cache_parse_provenance(struct calib_cache *cache, const unsigned char *q, uint32_t size,
		       struct error *err)
{
	struct calib_provenance *p = &cache->provenance;
	uint32_t used = CACHE_PROVENANCE_FIXED;
	uint32_t n_texts;

	if (size < CACHE_PROVENANCE_FIXED)
		return error_set(err, "%s: corrupt header: provenance of %u bytes, at least %d "
				 "expected", cache->path, size, CACHE_PROVENANCE_FIXED);
	p->n_tokens = cache_get_u64(q);
	p->ctx = (int)cache_get_u32(q + 8);
	p->n_windows = (int)cache_get_u32(q + 12);
	p->seed = cache_get_u64(q + 16);
	p->sample_size = (int)cache_get_u32(q + 24);
	n_texts = cache_get_u32(q + 28);
	memcpy(p->version, q + 32, 15);
	p->version[15] = '\0';
	if (n_texts > size / CACHE_TEXT_FIXED)
		return error_set(err, "%s: corrupt header: %u text entries do not fit %u bytes",
				 cache->path, n_texts, size);
	p->texts = alloc_zeroed(n_texts > 0 ? n_texts : 1, sizeof(*p->texts));
	for (uint32_t i = 0; i < n_texts; i++) {
		uint32_t len;

		if (size - used < CACHE_TEXT_FIXED)
			return error_set(err, "%s: corrupt header: text entry %u runs past the "
					 "provenance", cache->path, i);
		len = cache_get_u32(q + used + 16);
		if (len > CACHE_MAX_NAME || len > size - used - CACHE_TEXT_FIXED)
			return error_set(err, "%s: corrupt header: text name of %u bytes", cache->path,
					 len);
		p->texts[i].size = cache_get_u64(q + used);
		p->texts[i].hash = cache_get_u64(q + used + 8);
		p->texts[i].name = alloc_strndup((const char *)q + used + CACHE_TEXT_FIXED, len);
		p->n_texts = (int)i + 1;
		used += CACHE_TEXT_FIXED + len;
	}
	if (used != size)
		return error_set(err, "%s: corrupt header: provenance has %u bytes, its entries %u",
				 cache->path, size, used);
	return 0;
}

/* Checks that index entry s describes the expected site and that its record size
 * follows from its dimension and sample count, so that no later allocation is sized
 * by a value that disagrees with the header. */
static int
cache_check_entry(const struct calib_cache *cache, int s, const char *label, int dim,
		  struct error *err)
{
	const struct calib_site_summary *m = &cache->entries[s].summary;
	uint64_t expected_raw;

	if (m->block != s / SITE_KIND_COUNT || m->kind != (enum site_kind)(s % SITE_KIND_COUNT))
		return error_set(err, "%s: corrupt index entry %d: it names block %u, kind %u, but "
				 "site %s belongs there; recalibrate", cache->path, s,
				 (unsigned)m->block, (unsigned)m->kind, label);
	if (m->dim != dim)
		return error_set(err, "%s: corrupt index entry for site %s: dimension %u, but the "
				 "header's shapes give %d; recalibrate", cache->path, label,
				 (unsigned)m->dim, dim);
	if (m->n_sample < 0 || m->n_sample > INT32_MAX / 2)
		return error_set(err, "%s: corrupt index entry for site %s: sample count %u is "
				 "larger than %d; recalibrate", cache->path, label,
				 (unsigned)m->n_sample, INT32_MAX / 2);
	if (m->max_absmax_channel < 0 || m->max_absmax_channel >= dim)
		return error_set(err, "%s: corrupt index entry for site %s: largest channel %u "
				 "is outside its %d channels; recalibrate", cache->path, label,
				 (unsigned)m->max_absmax_channel, dim);
	expected_raw = cache_record_raw_size((uint64_t)dim, (uint64_t)m->n_sample);
	if (m->raw_size != expected_raw)
		return error_set(err, "%s: corrupt index entry for site %s: record size %" PRIu64
				 " bytes, but dimension %d with %d sample rows needs %" PRIu64
				 "; recalibrate", cache->path, label, m->raw_size, dim, m->n_sample,
				 expected_raw);
	return 0;
}

/* Checks each entry: the expected site in order, sizes that match the dimension, and
 * records laid end to end from the header to the end of the file, so that every byte
 * of the file is covered by a checksum. */
static int
cache_parse_index(struct calib_cache *cache, const unsigned char *index, uint64_t header_size,
		  uint64_t file_size, struct error *err)
{
	const struct model_config *c = &cache->provenance.config;
	uint64_t expected_offset = header_size;
	char label[64];

	for (int s = 0; s < cache->n_blocks * SITE_KIND_COUNT; s++) {
		const unsigned char *e = index + (size_t)s * CACHE_INDEX_ENTRY;
		struct cache_entry *entry = &cache->entries[s];
		struct calib_site_summary *m = &entry->summary;
		enum site_kind kind = (enum site_kind)(s % SITE_KIND_COUNT);
		int dim = kind == SITE_FFN_DOWN ? c->hidden_dim
			  : kind == SITE_ATTN_OUT ? c->n_heads * c->head_dim : c->dim;

		m->block = (int)cache_get_u32(e + CACHE_ENTRY_BLOCK);
		m->kind = (enum site_kind)cache_get_u32(e + CACHE_ENTRY_KIND);
		m->dim = (int)cache_get_u32(e + CACHE_ENTRY_DIM);
		m->n_sample = (int)cache_get_u32(e + CACHE_ENTRY_N_SAMPLE);
		entry->offset = cache_get_u64(e + CACHE_ENTRY_OFFSET);
		m->compressed_size = cache_get_u64(e + CACHE_ENTRY_COMPRESSED);
		m->raw_size = cache_get_u64(e + CACHE_ENTRY_RAW);
		entry->checksum = cache_get_u64(e + CACHE_ENTRY_CHECKSUM);
		m->n_tokens = cache_get_u64(e + CACHE_ENTRY_N_TOKENS);
		m->nonfinite = cache_get_u64(e + CACHE_ENTRY_NONFINITE);
		m->mean_sq_norm = cache_get_f64(e + CACHE_ENTRY_SQ_NORM);
		m->mean_sq_range_sym = cache_get_f64(e + CACHE_ENTRY_SQ_RANGE_SYM);
		m->mean_sq_range_asym = cache_get_f64(e + CACHE_ENTRY_SQ_RANGE_ASYM);
		m->max_absmax = cache_get_f32(e + CACHE_ENTRY_MAX_ABSMAX);
		m->max_absmax_channel = (int)cache_get_u32(e + CACHE_ENTRY_MAX_ABSMAX_CHANNEL);

		calib_site_label(label, sizeof(label), s / SITE_KIND_COUNT, kind);
		if (cache_check_entry(cache, s, label, dim, err) != 0)
			return -1;
		if (entry->offset != expected_offset || m->compressed_size == 0 ||
		    m->compressed_size > file_size - expected_offset)
			return error_set(err, "%s: the record of site %s lies outside the file (bytes "
					 "%" PRIu64 "..+%" PRIu64 " of %" PRIu64 "); the file is "
					 "truncated or corrupt, recalibrate", cache->path, label,
					 entry->offset, m->compressed_size, file_size);
		expected_offset += m->compressed_size;
	}
	if (expected_offset != file_size)
		return error_set(err, "%s: %" PRIu64 " bytes after the last record; the file is "
				 "corrupt, recalibrate", cache->path, file_size - expected_offset);
	return 0;
}

int
calib_cache_check_replaceable(const char *path, struct error *err)
{
	unsigned char magic[sizeof(CACHE_MAGIC)];
	struct stat st;
	size_t got = 0;
	FILE *f;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
		return 0;
	f = fopen(path, "rb");
	if (f != NULL) {
		got = fread(magic, 1, sizeof(magic), f);
		fclose(f);
	}
	if (got == sizeof(magic) && memcmp(magic, CACHE_MAGIC, sizeof(magic)) == 0)
		return 0;
	return error_set(err, "%s: exists and is not a calibration cache, so it is not replaced; "
			 "remove it or choose another output name", path);
}

/* Checks the magic and version and reads the sizes needed to read the whole header. */
static int
cache_parse_fixed(struct calib_cache *cache, const unsigned char *h, uint64_t file_size,
		  uint32_t *header_size, uint32_t *provenance_size, struct error *err)
{
	uint32_t version = cache_get_u32(h + 8);
	uint32_t n_sites = cache_get_u32(h + 56);

	if (memcmp(h, CACHE_MAGIC, 8) != 0)
		return error_set(err, "%s: not a catscope calibration cache (bad magic)", cache->path);
	if (version != CACHE_VERSION)
		return error_set(err, "%s: cache format version %u, but this catscope reads version "
				 "%d; the header is corrupt or the file is from another release",
				 cache->path, version, CACHE_VERSION);
	*header_size = cache_get_u32(h + 12);
	*provenance_size = cache_get_u32(h + 60);
	if (n_sites == 0 || n_sites > CACHE_MAX_SITES || n_sites % SITE_KIND_COUNT != 0)
		return error_set(err, "%s: corrupt header: %u sites, expected a positive multiple "
				 "of %d up to %d; recalibrate", cache->path, n_sites, SITE_KIND_COUNT,
				 CACHE_MAX_SITES);
	if (*provenance_size > CACHE_MAX_PROVENANCE)
		return error_set(err, "%s: corrupt header: provenance of %u bytes, at most %u "
				 "expected; recalibrate", cache->path, *provenance_size,
				 CACHE_MAX_PROVENANCE);
	if (*header_size != (uint64_t)CACHE_FIXED_SIZE + *provenance_size +
				    (uint64_t)n_sites * CACHE_INDEX_ENTRY + CACHE_CHECKSUM_SIZE)
		return error_set(err, "%s: corrupt header: its sizes disagree (%u sites, %u-byte "
				 "provenance, %u-byte header); recalibrate", cache->path, n_sites,
				 *provenance_size, *header_size);
	if (*header_size > file_size)
		return error_set(err, "%s: the file ends at byte %" PRIu64 " inside its header of %u "
				 "bytes; it is truncated, recalibrate", cache->path, file_size,
				 *header_size);
	cache->n_blocks = (int)(n_sites / SITE_KIND_COUNT);
	return 0;
}

/* Reads the model fingerprint and shapes; called once the header checksum has passed. */
static int
cache_parse_shapes(struct calib_cache *cache, const unsigned char *h, struct error *err)
{
	struct model_config *c = &cache->provenance.config;
	int32_t shapes[8];

	cache->provenance.fingerprint = cache_get_u64(h + 16);
	for (int i = 0; i < 8; i++)
		shapes[i] = (int32_t)cache_get_u32(h + 24 + 4 * i);
	c->dim = shapes[0];
	c->hidden_dim = shapes[1];
	c->n_layers = shapes[2];
	c->n_heads = shapes[3];
	c->n_kv_heads = shapes[4];
	c->head_dim = shapes[5];
	c->vocab_size = shapes[6];
	c->context_length = shapes[7];
	if (c->n_layers != cache->n_blocks || c->dim <= 0 || c->dim > CACHE_MAX_DIM ||
	    c->hidden_dim <= 0 || c->hidden_dim > CACHE_MAX_DIM || c->n_heads <= 0 ||
	    c->head_dim <= 0 || c->n_heads > CACHE_MAX_DIM / c->head_dim)
		return error_set(err, "%s: corrupt header: shapes (dim %d, hidden %d, %d blocks, "
				 "%d heads of %d) do not fit %d blocks", cache->path, c->dim,
				 c->hidden_dim, c->n_layers, c->n_heads, c->head_dim, cache->n_blocks);
	return 0;
}

static int
cache_check_model(const struct calib_cache *cache, const struct model *model, struct error *err)
{
	const struct model_config *a = &cache->provenance.config, *b = &model->config;

	if (cache->provenance.fingerprint != model->fingerprint)
		return error_set(err, "%s: the cache was made for model fingerprint %016" PRIx64
				 ", but %s has fingerprint %016" PRIx64 "; recalibrate with "
				 "this model", cache->path, cache->provenance.fingerprint,
				 model->path ? model->path : "the model", model->fingerprint);
	if (a->dim != b->dim || a->hidden_dim != b->hidden_dim || a->n_layers != b->n_layers ||
	    a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads ||
	    a->head_dim != b->head_dim || a->vocab_size != b->vocab_size)
		return error_set(err, "%s: the cache's shapes (dim %d, %d blocks) differ from the "
				 "model's (dim %d, %d blocks); recalibrate with this model",
				 cache->path, a->dim, a->n_layers, b->dim, b->n_layers);
	return 0;
}

static int
cache_open_checked(struct calib_cache *cache, const struct model *model, struct error *err)
{
	unsigned char fixed[CACHE_FIXED_SIZE];
	unsigned char *header;
	uint32_t header_size = 0, provenance_size = 0;
	struct stat st;
	int rc;

	if (fstat(cache->fd, &st) != 0 || !S_ISREG(st.st_mode))
		return error_set(err, "%s: not a regular file", cache->path);
	if ((uint64_t)st.st_size < CACHE_FIXED_SIZE)
		return error_set(err, "%s: %lld bytes, shorter than a cache header; the file is "
				 "truncated or not a cache", cache->path, (long long)st.st_size);
	if (cache_read_at(cache, fixed, CACHE_FIXED_SIZE, 0, err) != 0 ||
	    cache_parse_fixed(cache, fixed, (uint64_t)st.st_size, &header_size, &provenance_size,
			      err) != 0)
		return -1;

	header = alloc_bytes(header_size);
	rc = cache_read_at(cache, header, header_size, 0, err);
	if (rc == 0 && hash_update(HASH_SEED, header, header_size - CACHE_CHECKSUM_SIZE) !=
			       cache_get_u64(header + header_size - CACHE_CHECKSUM_SIZE))
		rc = error_set(err, "%s: header checksum mismatch; the header or index is corrupt, "
			       "recalibrate", cache->path);
	if (rc == 0)
		rc = cache_parse_shapes(cache, header, err);
	if (rc == 0)
		rc = cache_parse_provenance(cache, header + CACHE_FIXED_SIZE, provenance_size, err);
	if (rc == 0) {
		cache->entries = alloc_zeroed((size_t)cache->n_blocks * SITE_KIND_COUNT,
					      sizeof(*cache->entries));
		rc = cache_parse_index(cache, header + CACHE_FIXED_SIZE + provenance_size, header_size,
				       (uint64_t)st.st_size, err);
	}
	free(header);
	if (rc == 0 && model != NULL)
		rc = cache_check_model(cache, model, err);
	return rc;
}

struct calib_cache *
calib_cache_open(const char *path, const struct model *model, struct error *err)
{
	struct calib_cache *cache = alloc_zeroed(1, sizeof(*cache));

	cache->path = alloc_strdup(path);
	/* O_NONBLOCK keeps a FIFO from blocking the open. cache_open_checked rejects anything
	 * but a regular file, and O_NONBLOCK does not change reads of a regular file. */
	cache->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (cache->fd < 0) {
		error_set(err, "%s: cannot open the calibration cache: %s", path, strerror(errno));
		calib_cache_close(cache);
		return NULL;
	}
	cache->has_model = model != NULL;
	if (cache_open_checked(cache, model, err) != 0) {
		calib_cache_close(cache);
		return NULL;
	}
	return cache;
}

void
calib_cache_close(struct calib_cache *cache)
{
	if (cache == NULL)
		return;
	if (cache->entries != NULL) {
		for (int s = 0; s < cache->n_blocks * SITE_KIND_COUNT; s++)
			calib_site_stats_clear(&cache->entries[s].stats);
	}
	free(cache->entries);
	for (int i = 0; i < cache->provenance.n_texts; i++)
		free(cache->provenance.texts[i].name);
	free(cache->provenance.texts);
	if (cache->fd >= 0)
		close(cache->fd);
	free(cache->path);
	free(cache);
}

static struct cache_entry *
cache_find(struct calib_cache *cache, int block, enum site_kind kind, struct error *err)
{
	if (block < 0 || block >= cache->n_blocks || (unsigned)kind >= SITE_KIND_COUNT) {
		error_set(err, "%s: no site %d/%d; the cache has %d blocks of %d sites", cache->path,
			  block, (int)kind, cache->n_blocks, SITE_KIND_COUNT);
		return NULL;
	}
	return &cache->entries[block * SITE_KIND_COUNT + kind];
}

/* Reads a record's compressed bytes and checks them against the index checksum. */
static unsigned char *
cache_read_record(struct calib_cache *cache, const struct cache_entry *e, struct error *err)
{
	unsigned char *packed = alloc_bytes(e->summary.compressed_size);
	char label[64];

	if (cache_read_at(cache, packed, e->summary.compressed_size, e->offset, err) != 0) {
		free(packed);
		return NULL;
	}
	if (hash_update(HASH_SEED, packed, e->summary.compressed_size) != e->checksum) {
		error_set(err, "%s: record of site %s is corrupt (checksum mismatch); recalibrate",
			  cache->path, cache_entry_label(e, label, sizeof(label)));
		free(packed);
		return NULL;
	}
	return packed;
}

/* Returns the expansion ratio allowed by CACHE_EXPANSION_VARIABLE, or
 * CACHE_MAX_EXPANSION when it is unset or not a positive integer. */
static uint64_t
cache_max_expansion(void)
{
	const char *text = getenv(CACHE_EXPANSION_VARIABLE);
	unsigned long long ratio;
	char *end;

	if (text == NULL || *text < '1' || *text > '9')
		return CACHE_MAX_EXPANSION;
	errno = 0;
	ratio = strtoull(text, &end, 10);
	if (*end != '\0' || errno != 0)
		return CACHE_MAX_EXPANSION;
	return ratio;
}

/* Rejects a record that would expand more than the allowed ratio, before its buffer is
 * allocated. With a model, the statistics part of the record is sized by the model's
 * dimensions and is exempt, but the sample rows, whose count only the file gives, are
 * not. */
static int
cache_check_expansion(const struct calib_cache *cache, const struct cache_entry *e,
		      const char *label, struct error *err)
{
	const struct calib_site_summary *m = &e->summary;
	uint64_t ratio = cache_max_expansion();
	uint64_t checked = m->raw_size;
	uint64_t allowed = CACHE_EXPANSION_FREE;

	if (cache->has_model)
		checked -= cache_record_raw_size((uint64_t)m->dim, 0);
	if (m->compressed_size > UINT64_MAX / ratio)
		return 0;
	if (m->compressed_size * ratio > allowed)
		allowed = m->compressed_size * ratio;
	if (checked <= allowed)
		return 0;
	return error_set(err, "%s: record of site %s expands from %" PRIu64 " to %" PRIu64 " bytes, "
			 "more than %" PRIu64 " times; real caches expand far less, so the file is "
			 "damaged or hostile. Recalibrate, %sor set %s to a larger ratio to load it",
			 cache->path, label, m->compressed_size, m->raw_size, ratio,
			 cache->has_model ? "" : "open it with its model, ", CACHE_EXPANSION_VARIABLE);
}

/* Checks that the record is one zstd frame whose header declares the raw size of the
 * index. The header alone proves nothing about the blocks, so cache_decompress still
 * grows its buffer only as output arrives. */
static int
cache_check_frame(const struct calib_cache *cache, const struct cache_entry *e,
		  const unsigned char *packed, struct error *err)
{
	const struct calib_site_summary *m = &e->summary;
	unsigned long long declared = ZSTD_getFrameContentSize(packed, m->compressed_size);
	size_t frame_size = ZSTD_findFrameCompressedSize(packed, m->compressed_size);
	char label[64];

	cache_entry_label(e, label, sizeof(label));
	if (declared == ZSTD_CONTENTSIZE_ERROR || ZSTD_isError(frame_size))
		return error_set(err, "%s: record of site %s is corrupt (not a zstd frame); "
				 "recalibrate", cache->path, label);
	if (frame_size != m->compressed_size)
		return error_set(err, "%s: record of site %s is corrupt (its zstd frame ends after "
				 "%zu of its %" PRIu64 " bytes); recalibrate", cache->path, label,
				 frame_size, m->compressed_size);
	if (declared == ZSTD_CONTENTSIZE_UNKNOWN)
		return error_set(err, "%s: record of site %s is corrupt (its zstd frame does not "
				 "declare its size); recalibrate", cache->path, label);
	if (declared != m->raw_size)
		return error_set(err, "%s: record of site %s is corrupt (its zstd frame declares %llu "
				 "bytes, but the index declares %" PRIu64 "); recalibrate",
				 cache->path, label, declared, m->raw_size);
	return cache_check_expansion(cache, e, label, err);
}

/* Decompresses a checked record into a new buffer of exactly raw_size bytes. The
 * buffer starts at 1 MiB at most and doubles only when the frame has filled it, so a
 * frame whose header declares gigabytes but whose blocks contain little fails before
 * it costs that memory. A frame that really expands that far is stopped earlier, by
 * cache_check_expansion. Returns NULL with err set on a corrupt frame. */
static unsigned char *
cache_decompress(const struct calib_cache *cache, const struct cache_entry *e,
		 const unsigned char *packed, struct error *err)
{
	const struct calib_site_summary *m = &e->summary;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	ZSTD_inBuffer in = { packed, m->compressed_size, 0 };
	ZSTD_outBuffer out = { NULL, m->raw_size < (1u << 20) ? m->raw_size : (1u << 20), 0 };
	const char *problem = NULL;
	char label[64];

	if (dctx == NULL) {
		error_set(err, "%s: out of memory for a zstd decompression context", cache->path);
		return NULL;
	}
	/* The writer's level 3 uses windows of at most 2 MiB (zstd windowLog 21), and the
	 * decoder allocates a buffer as large as the window a frame requests. */
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, CACHE_ZSTD_WINDOW_LOG_MAX);
	out.dst = alloc_bytes(out.size);
	for (;;) {
		size_t in_before = in.pos, out_before = out.pos;
		size_t rc = ZSTD_decompressStream(dctx, &out, &in);

		if (ZSTD_isError(rc)) {
			problem = ZSTD_getErrorName(rc);
			break;
		}
		if (rc == 0) {
			if (out.pos != m->raw_size || in.pos != in.size)
				problem = "wrong decompressed size";
			break;
		}
		if (out.pos == out.size && out.size < m->raw_size) {
			out.size = out.size > m->raw_size / 2 ? m->raw_size : 2 * out.size;
			out.dst = alloc_resize(out.dst, out.size, 1);
			continue;
		}
		/* Each call consumes or produces bytes until the input ends or the buffer,
		 * now raw_size bytes, is full, so a call without progress is the end. */
		if (in.pos == in_before && out.pos == out_before) {
			problem = in.pos == in.size ? "the zstd frame is truncated"
				  : "the zstd frame holds more bytes than the index declares";
			break;
		}
	}
	ZSTD_freeDCtx(dctx);
	if (problem != NULL) {
		error_set(err, "%s: record of site %s is corrupt (%s); recalibrate", cache->path,
			  cache_entry_label(e, label, sizeof(label)), problem);
		free(out.dst);
		return NULL;
	}
	return out.dst;
}

static void
cache_decode_record(const unsigned char *p, const struct calib_site_summary *m,
		    struct site_stats *s)
{
	size_t d = (size_t)m->dim;

	s->dim = m->dim;
	s->n_tokens = m->n_tokens;
	s->nonfinite = m->nonfinite;
	s->mean_sq_norm = m->mean_sq_norm;
	s->mean_sq_range_sym = m->mean_sq_range_sym;
	s->mean_sq_range_asym = m->mean_sq_range_asym;
	s->n_sample = m->n_sample;
	s->mean = alloc_array(d, sizeof(double));
	s->absmax = alloc_array(d, sizeof(float));
	s->second_moment = alloc_aligned(d * d, sizeof(double));
	s->sample = m->n_sample > 0 ? alloc_array((size_t)m->n_sample * d, sizeof(float)) : NULL;
	for (size_t i = 0; i < d; i++, p += 8)
		s->mean[i] = cache_get_f64(p);
	for (size_t i = 0; i < d; i++, p += 4)
		s->absmax[i] = cache_get_f32(p);
	for (size_t i = 0; i < d; i++) {
		for (size_t j = i; j < d; j++, p += 4) {
			double v = cache_get_f32(p);

			s->second_moment[i * d + j] = v;
			s->second_moment[j * d + i] = v;
		}
	}
	for (size_t i = 0; i < (size_t)m->n_sample * d; i++, p += 4)
		s->sample[i] = cache_get_f32(p);
}

const struct site_stats *
calib_cache_site(struct calib_cache *cache, int block, enum site_kind kind, struct error *err)
{
	struct cache_entry *e = cache_find(cache, block, kind, err);
	unsigned char *packed, *raw = NULL;

	if (e == NULL)
		return NULL;
	if (e->loaded)
		return &e->stats;
	packed = cache_read_record(cache, e, err);
	if (packed == NULL)
		return NULL;
	if (cache_check_frame(cache, e, packed, err) == 0)
		raw = cache_decompress(cache, e, packed, err);
	free(packed);
	if (raw == NULL)
		return NULL;
	cache_decode_record(raw, &e->summary, &e->stats);
	free(raw);
	e->loaded = 1;
	return &e->stats;
}

void
calib_cache_release(struct calib_cache *cache, int block, enum site_kind kind)
{
	struct cache_entry *e = cache_find(cache, block, kind, NULL);

	if (e != NULL && e->loaded) {
		calib_site_stats_clear(&e->stats);
		e->loaded = 0;
	}
}

int
calib_cache_verify(struct calib_cache *cache, struct error *err)
{
	for (int s = 0; s < cache->n_blocks * SITE_KIND_COUNT; s++) {
		unsigned char *packed = cache_read_record(cache, &cache->entries[s], err);

		if (packed == NULL)
			return -1;
		free(packed);
	}
	return 0;
}

const struct calib_provenance *
calib_cache_provenance(const struct calib_cache *cache)
{
	return &cache->provenance;
}

int
calib_cache_n_blocks(const struct calib_cache *cache)
{
	return cache->n_blocks;
}

const struct calib_site_summary *
calib_cache_summary(const struct calib_cache *cache, int block, enum site_kind kind)
{
	if (block < 0 || block >= cache->n_blocks || (unsigned)kind >= SITE_KIND_COUNT)
		return NULL;
	return &cache->entries[block * SITE_KIND_COUNT + kind].summary;
}
