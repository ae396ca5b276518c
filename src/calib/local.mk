# Calibration: running windows, per-site statistics, the cache file.
libcatscope_a_SOURCES += src/calib/sitestats.c
noinst_HEADERS += include/catscope/sitestats.h
libcatscope_a_SOURCES += src/calib/accumulate.c src/calib/run.c src/calib/cache_write.c \
	src/calib/cache_read.c
noinst_HEADERS += include/catscope/calib.h include/catscope/calib_cache.h src/calib/calib_impl.h \
	src/calib/cache_format.h

check_PROGRAMS += tests/test_calib
CS_TESTS += tests/test_calib
tests_test_calib_SOURCES = tests/test_calib.c
tests_test_calib_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/src/calib
tests_test_calib_LDADD = $(TEST_LIBS)

bench_programs += bench/bench_calib
EXTRA_PROGRAMS += bench/bench_calib
bench_bench_calib_SOURCES = bench/bench_calib.c
bench_bench_calib_LDADD = $(CS_LIBS)
CLEANFILES += bench/bench_calib
dist_man_MANS += man/catscope-cache.5
