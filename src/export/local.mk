# Sources and tests of the export part. The loader of exported directories belongs to
# the model part but is listed here with the rest of the export feature.
libcatscope_a_SOURCES += src/export/export.c src/export/export_tensors.c \
	src/export/export_config.c src/export/runtime.c src/model/model_export.c \
	src/model/model_export_check.c
noinst_HEADERS += include/catscope/export.h src/export/export_impl.h src/model/model_export_check.h
dist_man_MANS += man/catscope-export.5

check_PROGRAMS += tests/test_export
CS_TESTS += tests/test_export
tests_test_export_SOURCES = tests/test_export.c
tests_test_export_CFLAGS = $(TEST_CFLAGS)
tests_test_export_LDADD = $(TEST_LIBS)
CS_SCRIPT_TESTS += tests/export_cli.sh
EXTRA_DIST += tests/export_cli.sh
