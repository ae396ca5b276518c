/* The integer grids, fake quantization and integer codes. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/linalg.h"
#include "catscope/quant.h"

void
quant_config_default(struct quant_config *qc)
{
	memset(qc, 0, sizeof(*qc));
	qc->weight = (struct quant_params){ .bits = 4, .mode = QUANT_SYMMETRIC, .clip = 1.0f };
	qc->act = (struct quant_params){ .bits = 4, .mode = QUANT_SYMMETRIC, .clip = 1.0f };
	qc->rounding = QUANT_RTN;
	qc->gptq_damp = 0.01;
}

int
quant_params_check(const struct quant_params *p, struct error *err)
{
	if (p->bits != 0 && (p->bits < QUANT_BITS_MIN || p->bits > QUANT_BITS_MAX))
		return error_set(err, "invalid bit width %d; expected %d to %d, or 0 for none",
				 p->bits, QUANT_BITS_MIN, QUANT_BITS_MAX);
	if (p->group_size < 0)
		return error_set(err, "invalid group size %d; expected 0 (whole row) or more",
				 p->group_size);
	if (!(p->clip > 0 && p->clip <= 1))
		return error_set(err, "invalid clip ratio %g; expected a value in (0, 1]",
				 (double)p->clip);
	return 0;
}

int
quant_params_parse(const char *text, struct quant_params *p, struct error *err)
{
	char buf[128], *save = NULL, *tok;
	/* The token that set each field, kept so that a repeat is rejected instead of
	 * silently replacing it. They point into buf, where strtok_r ends each with NUL. */
	const char *mode_token = NULL, *group_token = NULL, *clip_token = NULL;

	*p = (struct quant_params){ .bits = 0, .mode = QUANT_SYMMETRIC, .clip = 1.0f };
	if (strcmp(text, "none") == 0)
		return 0;
	if (strlen(text) >= sizeof(buf))
		return error_set(err, "quantizer \"%.40s...\" is too long", text);
	strcpy(buf, text);
	for (tok = strtok_r(buf, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save)) {
		const char **seen = NULL;
		const char *field = NULL;
		char *end;
		long value;

		if (strcmp(tok, "sym") == 0 || strcmp(tok, "asym") == 0) {
			seen = &mode_token;
			field = "mode";
		} else if (tok[0] == 'g' && tok != buf) {
			seen = &group_token;
			field = "group size";
		} else if (strncmp(tok, "clip=", 5) == 0) {
			seen = &clip_token;
			field = "clip ratio";
		}
		if (seen != NULL && *seen != NULL)
			return error_set(err, "quantizer \"%s\" sets the %s twice (%s and %s); give "
					      "it once", text, field, *seen, tok);
		if (seen != NULL)
			*seen = tok;

		if (tok == buf) {
			errno = 0;
			value = strtol(tok, &end, 10);
			if (*end != '\0' || end == tok || errno != 0 || value < INT_MIN || value > INT_MAX)
				return error_set(err, "invalid quantizer \"%s\": expected a bit width "
						      "first, as in \"4:g128\"", text);
			p->bits = (int)value;
		} else if (strcmp(tok, "sym") == 0) {
			p->mode = QUANT_SYMMETRIC;
		} else if (strcmp(tok, "asym") == 0) {
			p->mode = QUANT_ASYMMETRIC;
		} else if (tok[0] == 'g') {
			errno = 0;
			value = strtol(tok + 1, &end, 10);
			if (*end != '\0' || end == tok + 1 || errno != 0 || value < 0 || value > INT_MAX)
				return error_set(err, "invalid group size \"%s\" in \"%s\"", tok, text);
			p->group_size = (int)value;
		} else if (strncmp(tok, "clip=", 5) == 0) {
			p->clip = strtof(tok + 5, &end);
			if (*end != '\0' || end == tok + 5)
				return error_set(err, "invalid clip ratio \"%s\" in \"%s\"", tok, text);
		} else {
			return error_set(err, "unknown quantizer option \"%s\" in \"%s\"; expected "
					      "sym, asym, g<size> or clip=<ratio>", tok, text);
		}
	}
	if (quant_params_check(p, err) < 0) {
		error_prefix(err, "quantizer \"%s\"", text);
		return -1;
	}
	return 0;
}

int
quant_config_parse(const char *text, struct quant_config *qc, struct error *err)
{
	char buf[256], *save = NULL, *item;
	int wbits, abits, used;
	/* The item that set each field. They point into buf, as in quant_params_parse. */
	const char *weight_item = NULL, *act_item = NULL, *rounding_item = NULL;
	const char *clip_search_item = NULL, *damp_item = NULL;

	quant_config_default(qc);
	if (strlen(text) >= sizeof(buf))
		return error_set(err, "quantizer configuration \"%.40s...\" is too long", text);
	if (sscanf(text, "w%da%d%n", &wbits, &abits, &used) == 2 && text[used] == '\0') {
		qc->weight.bits = wbits;
		qc->act.bits = abits;
		if (quant_params_check(&qc->weight, err) < 0 || quant_params_check(&qc->act, err) < 0) {
			error_prefix(err, "quantizer configuration \"%s\"", text);
			return -1;
		}
		return 0;
	}
	strcpy(buf, text);
	for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		const char **seen;
		const char *field;
		char *end;

		if (item[0] == 'w') {
			seen = &weight_item;
			field = "weight quantizer";
		} else if (item[0] == 'a') {
			seen = &act_item;
			field = "activation quantizer";
		} else if (strcmp(item, "rtn") == 0 || strcmp(item, "gptq") == 0) {
			seen = &rounding_item;
			field = "rounding";
		} else if (strcmp(item, "clip-search") == 0) {
			seen = &clip_search_item;
			field = "clip search";
		} else if (strncmp(item, "damp=", 5) == 0) {
			seen = &damp_item;
			field = "GPTQ dampening";
		} else {
			return error_set(err, "unknown item \"%s\" in quantizer configuration \"%s\"; "
					      "expected w<bits>..., a<bits>..., rtn, gptq, clip-search "
					      "or damp=<fraction>", item, text);
		}
		if (*seen != NULL)
			return error_set(err, "quantizer configuration \"%s\" sets the %s twice (%s "
					      "and %s); give it once", text, field, *seen, item);
		*seen = item;

		if (item[0] == 'w' || item[0] == 'a') {
			struct quant_params *p = item[0] == 'w' ? &qc->weight : &qc->act;

			if (quant_params_parse(item + 1, p, err) < 0) {
				error_prefix(err, "quantizer configuration \"%s\"", text);
				return -1;
			}
		} else if (strcmp(item, "rtn") == 0) {
			qc->rounding = QUANT_RTN;
		} else if (strcmp(item, "gptq") == 0) {
			qc->rounding = QUANT_GPTQ;
		} else if (strcmp(item, "clip-search") == 0) {
			qc->clip_search = true;
		} else {
			/* GPTQ adds damp times the mean diagonal to the Hessian and raises it tenfold
			 * when the factorisation fails, so 0 could never recover, and above 1 the
			 * added term would outweigh the Hessian's own diagonal on average. */
			qc->gptq_damp = strtod(item + 5, &end);
			if (*end != '\0' || end == item + 5 || !isfinite(qc->gptq_damp) ||
			    !(qc->gptq_damp > 0 && qc->gptq_damp <= QUANT_DAMP_MAX))
				return error_set(err, "invalid dampening \"%s\" in \"%s\"; expected a "
						      "fraction of the mean Hessian diagonal in (0, %g]",
						      item + 5, text, QUANT_DAMP_MAX);
		}
	}
	return 0;
}

void
quant_config_format(const struct quant_config *qc, char *buf, int size)
{
	char w[64], a[64];
	int n;

	quant_params_format(&qc->weight, w, sizeof(w));
	quant_params_format(&qc->act, a, sizeof(a));
	n = snprintf(buf, size, "w%s,a%s,%s", w, a, qc->rounding == QUANT_GPTQ ? "gptq" : "rtn");
	if (qc->clip_search && n < size)
		n += snprintf(buf + n, size - n, ",clip-search");
	if (qc->rounding == QUANT_GPTQ && n < size)
		snprintf(buf + n, size - n, ",damp=%g", qc->gptq_damp);
}

void
quant_params_format(const struct quant_params *p, char *buf, int size)
{
	int n;

	if (p->bits == 0) {
		snprintf(buf, size, "none");
		return;
	}
	n = snprintf(buf, size, "%d%s", p->bits, p->mode == QUANT_ASYMMETRIC ? ":asym" : "");
	if (p->group_size > 0 && n < size)
		n += snprintf(buf + n, size - n, ":g%d", p->group_size);
	if (p->clip != 1.0f && n < size)
		snprintf(buf + n, size - n, ":clip=%g", (double)p->clip);
}

int
quant_group_count(const struct quant_params *p, int cols)
{
	if (p->group_size <= 0 || p->group_size >= cols)
		return 1;
	return (cols + p->group_size - 1) / p->group_size;
}

void
quant_group_step_range(const float *v, int n, const struct quant_params *p, float clip,
		       float *step, int32_t *zero, float *range)
{
	int levels = (1 << p->bits) - 1;
	float c = clip > 0 ? clip : p->clip;

	if (p->mode == QUANT_SYMMETRIC) {
		float amax = 0;

		for (int i = 0; i < n; i++)
			if (fabsf(v[i]) > amax)
				amax = fabsf(v[i]);
		*range = 2 * amax;
		*step = 2.0f * c * amax / levels;
		*zero = 1 << (p->bits - 1);
		if (!(*step > 0))
			*step = 1.0f;
	} else {
		float lo = v[0], hi = v[0], mid, half;

		for (int i = 1; i < n; i++) {
			if (v[i] < lo)
				lo = v[i];
			if (v[i] > hi)
				hi = v[i];
		}
		*range = hi - lo;
		mid = 0.5f * (lo + hi);
		half = 0.5f * c * (hi - lo);
		*step = 2.0f * half / levels;
		if (!(*step > 0))
			*step = fabsf(lo) > 0 ? fabsf(lo) : 1.0f;
		*zero = (int32_t)nearbyintf(-(mid - half) / *step);
	}
}

void
quant_group_step(const float *v, int n, const struct quant_params *p, float clip,
		 float *step, int32_t *zero)
{
	float range;

	quant_group_step_range(v, n, p, clip, step, zero, &range);
}

/* Round half to even of r, clamped to the integers [lo, hi]; NaN gives lo. Adding and
 * subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer in the
 * default rounding mode, as nearbyintf does, and unlike a call to nearbyintf it
 * vectorizes. Clamping to [lo - 1, hi + 1] first keeps r in that range and changes no
 * result. lo and hi must lie within +-2^21. */
static inline float
round_clamp(float r, float lo, float hi)
{
	r = r >= lo - 1 ? r : lo - 1;
	r = r <= hi + 1 ? r : hi + 1;
	r = (r + 0x1.8p23f) - 0x1.8p23f;
	r = r >= lo ? r : lo;
	return r <= hi ? r : hi;
}

/* The code range of a group minus its zero point: the rounded v / step must lie in
 * [*lo, *hi], and the code is that value plus zero. Returns false when the zero point
 * is too large for round_clamp. */
static bool
code_range(const struct quant_params *p, int32_t zero, float *lo, float *hi)
{
	if (p->mode == QUANT_SYMMETRIC) {
		*lo = -(float)(1 << (p->bits - 1));
		*hi = (float)((1 << (p->bits - 1)) - 1);
		return true;
	}
	if (zero > (1 << 21) || zero < -(1 << 21))
		return false;
	*lo = -(float)zero;
	*hi = (float)((1 << p->bits) - 1 - zero);
	return true;
}

uint8_t
quant_code(float v, const struct quant_params *p, float step, int32_t zero)
{
	float lo, hi, q;

	if (!code_range(p, zero, &lo, &hi)) {
		q = nearbyintf(v / step) + (float)zero;
		if (!(q >= 0)) /* also catches NaN */
			q = 0;
		return (uint8_t)(q > (1 << p->bits) - 1 ? (1 << p->bits) - 1 : q);
	}
	q = round_clamp(v / step, lo, hi);
	return (uint8_t)(q + (float)zero);
}

void
quant_fake_rows(float *x, int rows, int cols, int64_t ld, const struct quant_params *p,
		const float *row_clip)
{
	int groups, g_size;

	if (p->bits == 0)
		return;
	groups = quant_group_count(p, cols);
	g_size = groups == 1 ? cols : p->group_size;
	for (int r = 0; r < rows; r++) {
		float *row = x + r * ld;
		float clip = row_clip != NULL ? row_clip[r] : 0;

		for (int g = 0; g < groups; g++) {
			int start = g * g_size;
			int n = start + g_size <= cols ? g_size : cols - start;
			float step;
			int32_t zero;

			quant_group_step(row + start, n, p, clip, &step, &zero);
			quant_fake_group(row + start, row + start, n, p, step, zero);
		}
	}
}

void
quant_fake_group(const float *v, float *out, int n, const struct quant_params *p, float step,
		 int32_t zero)
{
	float lo, hi;

	if (!code_range(p, zero, &lo, &hi)) {
		for (int i = 0; i < n; i++)
			out[i] = ((float)quant_code(v[i], p, step, zero) - (float)zero) * step;
		return;
	}
	/* (code - zero) * step with code = q + zero is q * step exactly. */
	for (int i = 0; i < n; i++)
		out[i] = round_clamp(v[i] / step, lo, hi) * step;
}

void
quant_codes(const float *w, int rows, int cols, const struct quant_params *p,
	    const float *row_clip, uint8_t *codes, float *scales, int32_t *zeros)
{
	int groups = quant_group_count(p, cols);
	int g_size = groups == 1 ? cols : p->group_size;

	for (int r = 0; r < rows; r++) {
		const float *row = w + (int64_t)r * cols;
		float clip = row_clip != NULL ? row_clip[r] : 0;

		for (int g = 0; g < groups; g++) {
			int start = g * g_size;
			int n = start + g_size <= cols ? g_size : cols - start;
			int64_t at = (int64_t)r * groups + g;

			quant_group_step(row + start, n, p, clip, &scales[at], &zeros[at]);
			for (int i = start; i < start + n; i++)
				codes[(int64_t)r * cols + i] = quant_code(row[i], p, scales[at], zeros[at]);
		}
	}
}

void
quant_dequantize(const uint8_t *codes, int rows, int cols, const struct quant_params *p,
		 const float *scales, const int32_t *zeros, float *out)
{
	int groups = quant_group_count(p, cols);
	int g_size = groups == 1 ? cols : p->group_size;

	for (int64_t r = 0; r < rows; r++)
		for (int i = 0; i < cols; i++) {
			int64_t at = r * groups + i / g_size;

			out[r * cols + i] = ((float)codes[r * cols + i] - (float)zeros[at]) * scales[at];
		}
}

int64_t
quant_packed_words(int64_t n, int bits)
{
	int per_word = 32 / bits;

	return (n + per_word - 1) / per_word;
}

int64_t
quant_pack(const uint8_t *codes, int64_t n, int bits, int32_t *out, struct error *err)
{
	int per_word;
	int64_t words;

	if (bits != 2 && bits != 4 && bits != 8)
		return error_set(err, "cannot pack %d-bit codes into int32; expected 2, 4 or 8",
				 bits);
	per_word = 32 / bits;
	words = quant_packed_words(n, bits);
	for (int64_t w = 0; w < words; w++) {
		uint32_t word = 0;

		for (int j = 0; j < per_word && w * per_word + j < n; j++)
			word |= ((uint32_t)codes[w * per_word + j] & ((1u << bits) - 1)) << (j * bits);
		memcpy(&out[w], &word, sizeof(word));
	}
	return words;
}

int
quant_unpack(const int32_t *packed, int64_t n, int bits, uint8_t *codes, struct error *err)
{
	int per_word;

	if (bits != 2 && bits != 4 && bits != 8)
		return error_set(err, "cannot unpack %d-bit codes from int32; expected 2, 4 or 8",
				 bits);
	per_word = 32 / bits;
	for (int64_t i = 0; i < n; i++) {
		uint32_t word;

		memcpy(&word, &packed[i / per_word], sizeof(word));
		codes[i] = (uint8_t)((word >> ((i % per_word) * bits)) & ((1u << bits) - 1));
	}
	return 0;
}
