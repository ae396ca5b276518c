/* Reading JSON files from model directories (config.json, tokenizer files, indexes). */
#ifndef CATSCOPE_JSONFILE_H
#define CATSCOPE_JSONFILE_H

#include <stddef.h>

#include <jansson.h>

#include "catscope/error.h"

/* Parses the JSON file at path with jansson's flags. The file is read through a
 * read-only map, so a FIFO or device of that name fails at once instead of blocking.
 * Returns NULL with a message naming the file and, for a syntax error, its line and
 * column. */
json_t *jsonfile_load(const char *path, size_t flags, struct error *err);

#endif
