# File formats: GGUF, safetensors, JSON configs.
libcatscope_a_SOURCES += src/formats/gguf.c src/formats/gguf_lookup.c src/formats/ggml_types.c \
	src/formats/jsonfile.c
noinst_HEADERS += include/catscope/gguf.h include/catscope/jsonfile.h

check_PROGRAMS += tests/test_gguf
CS_TESTS += tests/test_gguf
tests_test_gguf_SOURCES = tests/test_gguf.c tests/gguf_builder.h
tests_test_gguf_CFLAGS = $(TEST_CFLAGS)
tests_test_gguf_LDADD = $(TEST_LIBS)
