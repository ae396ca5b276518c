# The tokenizer (part of the model).
libcatscope_a_SOURCES += src/model/tokenizer.c src/model/tokenizer_bpe.c \
	src/model/tokenizer_spm.c src/model/tokenizer_hf.c
noinst_HEADERS += include/catscope/tokenizer.h src/model/tokenizer_impl.h

check_PROGRAMS += tests/test_tokenizer
CS_TESTS += tests/test_tokenizer
tests_test_tokenizer_SOURCES = tests/test_tokenizer.c
tests_test_tokenizer_CFLAGS = $(TEST_CFLAGS)
tests_test_tokenizer_LDADD = $(TEST_LIBS)
