# safetensors: single files and sharded checkpoints (part of the formats).
libcatscope_a_SOURCES += src/formats/safetensors.c
noinst_HEADERS += include/catscope/safetensors.h

check_PROGRAMS += tests/test_safetensors
CS_TESTS += tests/test_safetensors
tests_test_safetensors_SOURCES = tests/test_safetensors.c tests/safetensors_writer.h
tests_test_safetensors_CFLAGS = $(TEST_CFLAGS)
tests_test_safetensors_LDADD = $(TEST_LIBS)
