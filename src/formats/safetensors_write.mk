# safetensors writer (part of the formats).
libcatscope_a_SOURCES += src/formats/safetensors_write.c
noinst_HEADERS += include/catscope/safetensors_write.h
