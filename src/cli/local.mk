# Command line: one file per command.
catscope_SOURCES += src/cli/main.c src/cli/cli_common.c src/cli/cmd_eval.c src/cli/cmd_generate.c
catscope_SOURCES += src/cli/cmd_explore.c
catscope_SOURCES += src/cli/cmd_calibrate.c src/cli/cmd_info.c
catscope_SOURCES += src/cli/cmd_report.c src/cli/report_output.c
catscope_SOURCES += src/cli/cmd_export.c
catscope_SOURCES += src/cli/cmd_replay.c
noinst_HEADERS += include/catscope/report.h
noinst_HEADERS += include/catscope/cli.h
dist_man_MANS += man/catscope.1
CS_SCRIPT_TESTS += tests/report_cli.sh tests/cli_errors.sh
EXTRA_DIST += tests/report_cli.sh tests/cli_errors.sh
