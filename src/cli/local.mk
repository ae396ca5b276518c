# Command line: one file per command.
catscope_SOURCES += src/cli/main.c src/cli/cli_common.c src/cli/cmd_eval.c src/cli/cmd_generate.c
catscope_SOURCES += src/cli/cmd_explore.c
noinst_HEADERS += include/catscope/cli.h
dist_man_MANS += man/catscope.1
