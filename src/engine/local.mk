# Sources and tests of the engine part: per-site transforms and the diagnostics
# (concentration, alignment, predicted and measured SQNR).
libcatscope_a_SOURCES += src/engine/transform_spec.c src/engine/transform.c \
	src/engine/metrics.c
noinst_HEADERS += include/catscope/transform.h include/catscope/metrics.h

check_PROGRAMS += tests/test_transform
CS_TESTS += tests/test_transform
tests_test_transform_SOURCES = tests/test_transform.c tests/site_fixture.h
tests_test_transform_CFLAGS = $(TEST_CFLAGS)
tests_test_transform_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_metrics
CS_TESTS += tests/test_metrics
tests_test_metrics_SOURCES = tests/test_metrics.c tests/site_fixture.h
tests_test_metrics_CFLAGS = $(TEST_CFLAGS)
tests_test_metrics_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_analysis
CS_TESTS += tests/test_analysis
tests_test_analysis_SOURCES = tests/test_analysis.c tests/site_fixture.h
tests_test_analysis_CFLAGS = $(TEST_CFLAGS)
tests_test_analysis_LDADD = $(TEST_LIBS)

# make bench builds and runs the site benchmark; it is not part of make all.
EXTRA_PROGRAMS += bench/bench_site
bench_programs += bench/bench_site
bench_bench_site_SOURCES = bench/bench_site.c
bench_bench_site_LDADD = $(CS_LIBS)
