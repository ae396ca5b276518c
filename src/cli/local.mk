# Command line: one file per command.
catscope_SOURCES += src/cli/main.c
catscope_SOURCES += src/cli/cmd_stub.c
