/* Parsing and formatting of transform spec strings. */
#include "config.h"

#include <errno.h>

#include <ctype.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/transform.h"

static int
parse_block(const char *text, const char *whole, int *block, struct error *err)
{
	char *end;
	long k;

	if (strcmp(text, "full") == 0) {
		*block = TRANSFORM_BLOCK_FULL;
		return 0;
	}
	k = isdigit((unsigned char)text[0]) ? strtol(text, &end, 10) : 0;
	if (!isdigit((unsigned char)text[0]) || *end != '\0' || k < 1 || k > 1 << 20)
		return error_set(err, "invalid block size \"%s\" in transform \"%s\"; expected a "
				      "positive integer or \"full\"", text, whole);
	*block = (int)k;
	return 0;
}

int
transform_spec_parse(const char *text, struct transform_spec *spec, struct error *err)
{
	const char *colon = strchr(text, ':');
	size_t name_len = colon ? (size_t)(colon - text) : strlen(text);
	const char *arg = colon ? colon + 1 : NULL;
	char *end;

	*spec = (struct transform_spec){ .kind = TRANSFORM_NONE, .block = TRANSFORM_BLOCK_FULL,
					 .alpha = 0.5, .seed = 0,
					 .ridge = TRANSFORM_DEFAULT_RIDGE };
	if (name_len == 4 && strncmp(text, "none", 4) == 0 && arg == NULL)
		return 0;
	if (name_len == 4 && strncmp(text, "cat1", 4) == 0 && arg == NULL) {
		spec->kind = TRANSFORM_CAT;
		spec->block = 1;
		return 0;
	}
	if (name_len == 6 && strncmp(text, "smooth", 6) == 0) {
		spec->kind = TRANSFORM_SMOOTH;
		spec->block = 1;
		if (arg != NULL) {
			spec->alpha = strtod(arg, &end);
			if (*end != '\0' || end == arg || !(spec->alpha >= 0 && spec->alpha <= 1))
				return error_set(err, "invalid SmoothQuant alpha \"%s\" in \"%s\"; "
						      "expected a number in [0, 1]", arg, text);
		}
		return 0;
	}
	if (name_len == 8 && strncmp(text, "hadamard", 8) == 0) {
		spec->kind = TRANSFORM_HADAMARD;
		return arg == NULL ? 0 : parse_block(arg, text, &spec->block, err);
	}
	if (name_len == 3 && strncmp(text, "cat", 3) == 0) {
		spec->kind = TRANSFORM_CAT;
		spec->block = TRANSFORM_BLOCK_DEFAULT;
		return arg == NULL ? 0 : parse_block(arg, text, &spec->block, err);
	}
	if (name_len == 6 && strncmp(text, "random", 6) == 0) {
		spec->kind = TRANSFORM_RANDOM;
		if (arg == NULL)
			return 0;
		/* strtoull accepts a sign and leading spaces and saturates on overflow; a seed
		 * is plain digits that fit 64 bits. */
		errno = 0;
		spec->seed = isdigit((unsigned char)arg[0]) ? strtoull(arg, &end, 10) : 0;
		if (!isdigit((unsigned char)arg[0]) || errno != 0 || (*end != '\0' && *end != ':'))
			return error_set(err, "invalid seed \"%s\" in transform \"%s\"; expected an "
					      "unsigned integer", arg, text);
		return *end == ':' ? parse_block(end + 1, text, &spec->block, err) : 0;
	}
	return error_set(err, "unknown transform \"%s\"; expected none, smooth[:ALPHA], "
			      "hadamard[:K], random[:SEED[:K]], cat1, cat[:K] or cat:full", text);
}

void
transform_spec_format(const struct transform_spec *spec, char *buf, int size)
{
	switch (spec->kind) {
	case TRANSFORM_NONE:
		snprintf(buf, size, "none");
		break;
	case TRANSFORM_SMOOTH:
		snprintf(buf, size, "smooth:%g", spec->alpha);
		break;
	case TRANSFORM_HADAMARD:
		if (spec->block == TRANSFORM_BLOCK_FULL)
			snprintf(buf, size, "hadamard");
		else
			snprintf(buf, size, "hadamard:%d", spec->block);
		break;
	case TRANSFORM_RANDOM:
		if (spec->block == TRANSFORM_BLOCK_FULL)
			snprintf(buf, size, "random:%llu", (unsigned long long)spec->seed);
		else
			snprintf(buf, size, "random:%llu:%d", (unsigned long long)spec->seed,
				 spec->block);
		break;
	case TRANSFORM_CAT:
		if (spec->block == 1)
			snprintf(buf, size, "cat1");
		else if (spec->block == TRANSFORM_BLOCK_DEFAULT)
			snprintf(buf, size, "cat");
		else if (spec->block == TRANSFORM_BLOCK_FULL)
			snprintf(buf, size, "cat:full");
		else
			snprintf(buf, size, "cat:%d", spec->block);
		break;
	}
}

bool
transform_spec_equal(const struct transform_spec *x, const struct transform_spec *y)
{
	char tx[64], ty[64];

	transform_spec_format(x, tx, sizeof(tx));
	transform_spec_format(y, ty, sizeof(ty));
	if (strcmp(tx, ty) != 0)
		return false;
	/* The canonical string rounds alpha and leaves out the ridge. */
	if (x->kind == TRANSFORM_SMOOTH)
		return x->alpha == y->alpha;
	if (x->kind == TRANSFORM_CAT)
		return x->ridge == y->ridge;
	return true;
}

int
transform_block_size(const struct transform_spec *spec, int dim)
{
	int k = spec->block;

	if (spec->kind == TRANSFORM_NONE)
		return dim;
	if (spec->kind == TRANSFORM_SMOOTH)
		return 1;
	if (k == TRANSFORM_BLOCK_DEFAULT)
		k = TRANSFORM_DEFAULT_BLOCK;
	if (k == TRANSFORM_BLOCK_FULL || k > dim)
		k = dim;
	return k;
}
