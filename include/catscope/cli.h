/* The command line: one function per subcommand, each in src/cli/cmd_<name>.c.
 * Each returns the process exit status: 0 on success, 1 on bad input or failure,
 * 2 on a usage error. */
#ifndef CATSCOPE_CLI_H
#define CATSCOPE_CLI_H

int cli_eval(int argc, char **argv);
int cli_generate(int argc, char **argv);

/* Prints "catscope: message" and a hint to run --help; returns 2. */
int cli_usage_error(const char *command, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
