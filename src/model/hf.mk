# Hugging Face model directories: config.json, safetensors weights, tokenizer.json.
libcatscope_a_SOURCES += src/model/model_hf.c

check_PROGRAMS += tests/test_model_hf
CS_TESTS += tests/test_model_hf
tests_test_model_hf_SOURCES = tests/test_model_hf.c tests/safetensors_writer.h
tests_test_model_hf_CFLAGS = $(TEST_CFLAGS)
tests_test_model_hf_LDADD = $(TEST_LIBS)
