# Core: errors, logging, allocation, atomic writes, progress.
libcatscope_a_SOURCES += src/core/error.c src/core/alloc.c src/core/log.c \
	src/core/atomicfile.c src/core/progress.c \
	src/core/half.c src/core/utf8.c src/core/hash.c src/core/mapfile.c \
	src/core/number_format.c src/core/parallel.c
noinst_HEADERS += include/catscope/error.h include/catscope/alloc.h include/catscope/log.h \
	include/catscope/atomicfile.h include/catscope/progress.h include/catscope/testutil.h \
	include/catscope/half.h include/catscope/utf8.h include/catscope/hash.h include/catscope/mapfile.h \
	include/catscope/number_format.h include/catscope/parallel.h

check_PROGRAMS += tests/test_core
CS_TESTS += tests/test_core
tests_test_core_SOURCES = tests/test_core.c
tests_test_core_CFLAGS = $(TEST_CFLAGS)
tests_test_core_LDADD = $(TEST_LIBS)
