/* Read-only memory maps of whole regular files, for the model-file readers. */
#ifndef CATSCOPE_MAPFILE_H
#define CATSCOPE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"

/* Maps path read-only. An empty file gives data NULL and size 0. Fails with a message
 * naming the file if it cannot be opened, is not a regular file or cannot be mapped. */
int mapfile_open(const char *path, const uint8_t **data, size_t *size, struct error *err);
void mapfile_close(const uint8_t *data, size_t size);

#endif
