# Sources and tests of the quant part: integer grids, codes and packing, clip search,
# GPTQ.
libcatscope_a_SOURCES += src/quant/grid.c src/quant/search.c
noinst_HEADERS += include/catscope/quant.h

check_PROGRAMS += tests/test_quant
CS_TESTS += tests/test_quant
tests_test_quant_SOURCES = tests/test_quant.c
tests_test_quant_CFLAGS = $(TEST_CFLAGS)
tests_test_quant_LDADD = $(TEST_LIBS)
