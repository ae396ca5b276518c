# File formats: GGUF, safetensors, JSON configs.
libcatscope_a_SOURCES += src/formats/gguf.c src/formats/gguf_lookup.c src/formats/ggml_types.c
noinst_HEADERS += include/catscope/gguf.h
