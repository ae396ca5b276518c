/* UTF-8 validation and decoding, shared by the file readers and the tokenizer. */
#ifndef CATSCOPE_UTF8_H
#define CATSCOPE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Returns true if s[0..length) is well-formed UTF-8 (no overlongs, no surrogates). */
bool utf8_is_valid(const char *s, size_t length);
/* Returns the byte length of the well-formed character at s (at most length bytes), or 0. */
size_t utf8_char_length(const char *s, size_t length);

#endif
