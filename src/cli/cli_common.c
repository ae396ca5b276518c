/* Helpers shared by the subcommands: messages, option values, input text. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catscope/alloc.h"
#include "catscope/cli.h"
#include "catscope/export.h"

/* Text inputs are read whole; larger corpora should be cut before calibration. */
#define CLI_MAX_TEXT_BYTES ((size_t)1 << 31)

int
cli_usage_error(const char *command, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "catscope %s: ", command);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'catscope %s --help' for usage.\n", command);
	return 2;
}

int
cli_option_error(const char *command, int code, int argc, char *const *argv)
{
	/* getopt_long leaves optind just past the offending argument. */
	const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : argv[argc - 1];
	int length = (int)strcspn(arg, "=");

	if (code == ':') {
		if (strncmp(arg, "--", 2) == 0)
			return cli_usage_error(command, "%.*s needs a value", length, arg);
		return cli_usage_error(command, "-%c needs a value", optopt);
	}
	if (strncmp(arg, "--", 2) == 0)
		return cli_usage_error(command, "unknown or ambiguous option '%.*s'", length, arg);
	if (optopt != 0)
		return cli_usage_error(command, "unknown option '-%c'", optopt);
	return cli_usage_error(command, "unknown option '%s'", arg);
}

int
cli_fail(const struct error *err)
{
	fprintf(stderr, "catscope: %s\n", err->message);
	return 1;
}

int
cli_parse_int(const char *command, const char *option, const char *text, int min, int max, int *out)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
		cli_usage_error(command, "%s expects a whole number from %d to %d, got '%s'", option, min,
				max, text);
		return -1;
	}
	*out = (int)value;
	return 0;
}

char *
cli_read_texts(char *const *paths, int n_paths, size_t *length, struct error *err)
{
	size_t total = 0;
	char *buffer = NULL;

	for (int i = 0; i < n_paths; i++) {
		/* O_NONBLOCK keeps a FIFO from blocking the open; the check below rejects it. */
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
		struct stat st;
		size_t size;

		if (f == NULL) {
			if (fd >= 0)
				close(fd);
			free(buffer);
			error_set(err, "%s: cannot open the text file: %s", paths[i], strerror(errno));
			return NULL;
		}
		if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
			fclose(f);
			free(buffer);
			error_set(err, "%s: not a regular file", paths[i]);
			return NULL;
		}
		size = (size_t)st.st_size;
		if (size > CLI_MAX_TEXT_BYTES - total) {
			fclose(f);
			free(buffer);
			error_set(err, "%s: the text inputs exceed 2 GiB; pass a smaller sample", paths[i]);
			return NULL;
		}
		buffer = alloc_resize(buffer, total + size + 1, 1);
		if (fread(buffer + total, 1, size, f) != size) {
			fclose(f);
			free(buffer);
			error_set(err, "%s: reading failed", paths[i]);
			return NULL;
		}
		fclose(f);
		total += size;
	}
	if (buffer == NULL)
		buffer = alloc_bytes(1);
	buffer[total] = '\0';
	*length = total;
	return buffer;
}

int
cli_check_text_windows(char *const *paths, int n_paths, size_t n_ids, int ctx, struct error *err)
{
	char names[512];

	if (n_ids >= (size_t)ctx)
		return 0;
	if (n_paths == 1)
		snprintf(names, sizeof(names), "%s", paths[0]);
	else
		snprintf(names, sizeof(names), "%s and %d other text file%s", paths[0], n_paths - 1,
			 n_paths == 2 ? "" : "s");
	/* A window needs two tokens: one to predict from and one to score. */
	if (n_ids < 2)
		return error_set(err, "%s: the text has %zu token%s, fewer than one window of %d; "
				 "pass a longer text", names, n_ids, n_ids == 1 ? "" : "s", ctx);
	return error_set(err, "%s: the text has %zu tokens, fewer than one window of %d; use "
			 "--ctx %zu or less, or a longer text", names, n_ids, ctx, n_ids);
}

int
cli_check_ctx(const struct model *model, int ctx, struct error *err)
{
	if (ctx <= model->config.context_length)
		return 0;
	return error_set(err, "--ctx %d is longer than the model's context of %d tokens; use --ctx "
			 "%d or less", ctx, model->config.context_length, model->config.context_length);
}

int
cli_tokenize(const struct model *model, const char *text, size_t length, int32_t **ids,
	     size_t *n_ids, struct error *err)
{
	return tokenizer_encode(model->tokenizer, text, length, true, ids, n_ids, err);
}

/* Rejects a second value for one setting. first is the value that first_option gave
 * it earlier, or NULL if none did. The message names both options because they may
 * differ, as --wbits and --weights do. */
static int
cli_reject_repeat(const char *command, const char *first_option, const char *first,
		  const char *option, const char *value, const char *setting)
{
	if (first == NULL)
		return 0;
	if (strcmp(first_option, option) == 0)
		cli_usage_error(command, "%s given twice ('%s' and '%s'); give it once", option,
				first, value);
	else
		cli_usage_error(command, "%s '%s' and %s '%s' both set the %s; give one of them",
				first_option, first, option, value, setting);
	return -1;
}

int
cli_parse_quant_option(const char *command, int code, const char *value,
		       struct cli_quant_given *given, struct transform_spec *spec,
		       struct quant_config *quant)
{
	struct error err;
	int bits;
	bool weight = code == 'W' || code == 'w';
	const char *option;
	const char **bits_option = weight ? &given->weight_bits_option : &given->act_bits_option;
	const char **bits_value = weight ? &given->weight_bits : &given->act_bits;
	const char *setting = weight ? "weight bit width" : "activation bit width";

	switch (code) {
	case 't':
		if (spec == NULL)
			return cli_usage_error(command, "--transform is not accepted"), -1;
		if (cli_reject_repeat(command, "--transform", given->transform, "--transform", value,
				      "transform") != 0)
			return -1;
		if (transform_spec_parse(value, spec, &err) != 0)
			return cli_usage_error(command, "--transform: %s", err.message), -1;
		given->transform = value;
		return 0;
	case 'W':
	case 'A':
		option = code == 'W' ? "--wbits" : "--abits";
		if (cli_reject_repeat(command, *bits_option, *bits_value, option, value, setting) != 0)
			return -1;
		if (cli_parse_int(command, option, value, 2, 8, &bits) != 0)
			return -1;
		(code == 'W' ? &quant->weight : &quant->act)->bits = bits;
		break;
	case 'w':
	case 'a':
		option = code == 'w' ? "--weights" : "--acts";
		if (cli_reject_repeat(command, *bits_option, *bits_value, option, value, setting) != 0)
			return -1;
		if (quant_params_parse(value, code == 'w' ? &quant->weight : &quant->act, &err) != 0)
			return cli_usage_error(command, "%s: %s", option, err.message), -1;
		break;
	case 'g':
		quant->rounding = QUANT_GPTQ;
		return 0;
	default:
		return cli_usage_error(command, "unknown option"), -1;
	}
	*bits_option = option;
	*bits_value = value;
	return 0;
}

int
cli_parse_dtype(const char *command, const char *text, enum simulation_storage *out)
{
	if (strcmp(text, "f16") == 0)
		*out = SIMULATION_F16;
	else if (strcmp(text, "bf16") == 0)
		*out = SIMULATION_BF16;
	else if (strcmp(text, "f32") == 0)
		*out = SIMULATION_F32;
	else
		return cli_usage_error(command, "--dtype expects f16, bf16 or f32, got '%s'", text), -1;
	return 0;
}

int
cli_check_not_export(const char *path, struct error *err)
{
	if (!export_is_directory(path))
		return 0;
	return error_set(err, "%s: the directory is a catscope export, which only 'catscope eval' "
			 "and 'catscope generate' run; give the model it was exported from "
			 "(catscope.provenance.source in its config.json)", path);
}
