/* The command line: one function per subcommand, each in src/cli/cmd_<name>.c.
 * Each returns the process exit status: 0 on success, 1 on bad input or failure,
 * 2 on a usage error. */
#ifndef CATSCOPE_CLI_H
#define CATSCOPE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"
#include "catscope/model.h"
#include "catscope/quant.h"
#include "catscope/simulate.h"
#include "catscope/transform.h"

int cli_eval(int argc, char **argv);
/* The explorer; argv[0] is the model. */
int cli_explore(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_calibrate(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_report(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_replay(int argc, char **argv);

/* Prints "catscope COMMAND: message" and a hint to run --help; returns 2. */
int cli_usage_error(const char *command, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prints the usage error for what getopt_long returned as code ('?' or ':'), naming
 * the option, and returns 2. The option string must start with ':' so that getopt
 * prints nothing itself. */
int cli_option_error(const char *command, int code, int argc, char *const *argv);
/* Prints "catscope: message" for a failure; returns 1. */
int cli_fail(const struct error *err);

/* Parses a positive integer option value; returns -1 with a message on anything else. */
int cli_parse_int(const char *command, const char *option, const char *text, int min, int max,
		  int *out);

/* The quantizer options seen so far on one command line, with their values, so that
 * a repeat or a conflict (--wbits 4 --weights 8) is rejected instead of the last
 * value silently winning. Start from all NULL. */
struct cli_quant_given {
	const char *transform;
	const char *weight_bits_option; /* "--wbits" or "--weights" */
	const char *weight_bits;
	const char *act_bits_option;    /* "--abits" or "--acts" */
	const char *act_bits;
};

/* Applies one of the quantizer options shared by report, eval and the explorer, named
 * by its getopt code: 't' --transform (spec may be NULL where it is not accepted),
 * 'W' --wbits, 'A' --abits, 'w' --weights, 'a' --acts, 'g' --gptq. Prints a usage
 * error and returns -1 on a bad value, a repeated option or a second option that sets
 * the same bit width. */
int cli_parse_quant_option(const char *command, int code, const char *value,
			   struct cli_quant_given *given, struct transform_spec *spec,
			   struct quant_config *quant);

/* The getopt_long entries of those options, with the codes cli_parse_quant_option takes. */
#define CLI_QUANTIZER_OPTIONS \
	{ "transform", required_argument, NULL, 't' }, \
	{ "wbits", required_argument, NULL, 'W' }, \
	{ "abits", required_argument, NULL, 'A' }, \
	{ "weights", required_argument, NULL, 'w' }, \
	{ "acts", required_argument, NULL, 'a' }, \
	{ "gptq", no_argument, NULL, 'g' }

/* Parses a --dtype value (f16, bf16 or f32). Prints a usage error and returns -1 on
 * anything else. */
int cli_parse_dtype(const char *command, const char *text, enum simulation_storage *out);

/* Reads and concatenates text files into one newly allocated buffer. */
char *cli_read_texts(char *const *paths, int n_paths, size_t *length, struct error *err);
/* Fails with a message that names the text files and a --ctx that fits when their
 * n_ids tokens do not fill one window of ctx tokens. */
int cli_check_text_windows(char *const *paths, int n_paths, size_t n_ids, int ctx,
			   struct error *err);
/* Fails with a message giving the largest usable --ctx if ctx exceeds the model's
 * context. */
int cli_check_ctx(const struct model *model, int ctx, struct error *err);
/* Fails when path is a directory written by catscope export. Its weights are in each
 * site's transformed basis and compute the model only with the transforms that eval
 * and generate apply, so calibrating, analysing or exporting it again would measure a
 * different model. */
int cli_check_not_export(const char *path, struct error *err);
/* Tokenizes the text with the model's convention (BOS at the start only). */
int cli_tokenize(const struct model *model, const char *text, size_t length, int32_t **ids,
		 size_t *n_ids, struct error *err);

#endif
