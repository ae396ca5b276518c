/* catscope's entry point: dispatches to the subcommands. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "catscope/atomicfile.h"
#include "catscope/cli.h"

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct cli_command cli_commands[] = {
	{ "eval", cli_eval, "measure the perplexity of a model on text" },
	{ "generate", cli_generate, "continue a prompt greedily" },
	{ "calibrate", cli_calibrate, "write the calibration cache of a model on text" },
	{ "info", cli_info, "check a calibration cache and summarise it" },
	{ "report", cli_report, "print the diagnostics of every site" },
	{ "export", cli_export, "write the quantized model as a checkpoint directory" },
	{ "replay", cli_replay, "reopen a saved session, or print its report with --batch" },
};

static void
cli_print_help(FILE *out)
{
	fprintf(out, "usage: catscope COMMAND [ARGS...]\n"
		     "       catscope MODEL [--calib CACHE]   (the interactive explorer)\n"
		     "       catscope --replay SESSION        (the explorer in a saved state)\n\n"
		     "catscope explores the quantization error of language models.\n\n"
		     "commands:\n");
	for (size_t i = 0; i < sizeof(cli_commands) / sizeof(cli_commands[0]); i++)
		fprintf(out, "  %-10s %s\n", cli_commands[i].name, cli_commands[i].summary);
	fprintf(out, "\nRun 'catscope COMMAND --help' for the options of a command, "
		     "and 'man catscope' (in the source tree: man ./man/catscope.1)\nfor the whole manual.\n");
}

static int
cli_dispatch(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		cli_print_help(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("catscope %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cli_commands) / sizeof(cli_commands[0]); i++) {
		if (strcmp(argv[1], cli_commands[i].name) == 0)
			return cli_commands[i].run(argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "--replay") == 0)
		return cli_replay(argc - 1, argv + 1);
	/* Anything else that is not an option names a model to explore; a word that is
	 * no file either is most likely a mistyped command. */
	if (argv[1][0] != '-') {
		struct stat st;

		if (stat(argv[1], &st) != 0) {
			fprintf(stderr, "catscope: '%s' is neither a command nor a model file or directory; "
				"run 'catscope --help' for the commands\n", argv[1]);
			return 2;
		}
		return cli_explore(argc - 1, argv + 1);
	}
	fprintf(stderr, "catscope: unknown option '%s'; run 'catscope --help' for the list\n",
		argv[1]);
	return 2;
}

int
main(int argc, char **argv)
{
	int rc;

	atomic_install_signal_cleanup();
	rc = cli_dispatch(argc, argv);
	/* A job that deferred a signal stopped and cleaned up itself. Its status is the one
	 * a shell reports for a process ended by that signal (130 for SIGINT), so that it
	 * matches a signal outside such a job, which the handler re-raises. */
	if (rc != 0 && atomic_deferred_signal_number() != 0)
		rc = 128 + atomic_deferred_signal_number();
	/* Output that never arrived (a full disk, a closed pipe) must not look like success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "catscope: writing the output failed: %s\n", strerror(errno));
		return rc == 0 ? 1 : rc;
	}
	return rc;
}
