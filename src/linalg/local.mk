# Sources and tests of the linalg part: BLAS and LAPACKE wrappers, dtype conversion,
# Hadamard transforms.
libcatscope_a_SOURCES += src/linalg/dense.c src/linalg/convert.c src/linalg/hadamard.c
noinst_HEADERS += include/catscope/linalg.h

check_PROGRAMS += tests/test_linalg
CS_TESTS += tests/test_linalg
tests_test_linalg_SOURCES = tests/test_linalg.c
tests_test_linalg_CFLAGS = $(TEST_CFLAGS)
tests_test_linalg_LDADD = $(TEST_LIBS)
