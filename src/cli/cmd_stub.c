#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include "catscope/cli.h"
int cli_eval(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "catscope: eval is not built yet\n"); return 1; }
int cli_generate(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "catscope: generate is not built yet\n"); return 1; }
