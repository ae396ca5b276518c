# Sources and tests of the tui part: the explorer.
libcatscope_a_SOURCES += src/tui/tui.c src/tui/screen.c src/tui/status.c src/tui/compare.c \
	src/tui/table.c src/tui/filter.c src/tui/detail.c src/tui/overview.c src/tui/help.c \
	src/tui/keys.c src/tui/save.c src/tui/jobs.c src/tui/line_edit.c
noinst_HEADERS += include/catscope/tui.h src/tui/tui_impl.h

CS_SCRIPT_TESTS += tests/tui_explorer.sh tests/tui_export.sh tests/tui_filter_utf8.sh tests/tui_status.sh
EXTRA_DIST += tests/tui_explorer.sh tests/tui_export.sh tests/tui_filter_utf8.sh tests/tui_status.sh
