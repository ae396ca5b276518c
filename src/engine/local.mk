# Sources and tests of the engine part: per-site transforms and the diagnostics
# (concentration, alignment, predicted and measured SQNR).
libcatscope_a_SOURCES += src/engine/transform_spec.c src/engine/transform.c
noinst_HEADERS += include/catscope/transform.h

check_PROGRAMS += tests/test_transform
CS_TESTS += tests/test_transform
tests_test_transform_SOURCES = tests/test_transform.c tests/site_fixture.h
tests_test_transform_CFLAGS = $(TEST_CFLAGS)
tests_test_transform_LDADD = $(TEST_LIBS)
