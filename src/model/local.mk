# The model: config, weights, forward pass.
libcatscope_a_SOURCES += src/model/model.c src/model/model_gguf.c src/model/forward.c src/model/eval.c
noinst_HEADERS += include/catscope/model.h include/catscope/model_load.h include/catscope/eval.h

check_PROGRAMS += tests/test_model
CS_TESTS += tests/test_model
tests_test_model_SOURCES = tests/test_model.c
tests_test_model_CFLAGS = $(TEST_CFLAGS)
tests_test_model_LDADD = $(TEST_LIBS)
