# The tokenizer (part of the model).
noinst_HEADERS += include/catscope/tokenizer.h
