/* Checks of an export's config.json that go beyond reading the catscope section,
 * internal to the loader of exported directories (model_export.c). */
#ifndef CATSCOPE_MODEL_EXPORT_CHECK_H
#define CATSCOPE_MODEL_EXPORT_CHECK_H

#include <jansson.h>

#include "catscope/error.h"
#include "catscope/safetensors.h"

/* Rejects keys the catscope section of format_version 1 does not have, Hugging Face
 * keys (hidden_size, max_position_embeddings, ...) that disagree with catscope.model,
 * and a quantization_config or quantizer spec that disagrees with the catscope
 * quantizers. Messages name path and the key. */
int model_export_check_config(const json_t *config, const char *path, struct error *err);

/* Fails unless the highest N of the checkpoint's "model.layers.N." tensors is
 * n_layers - 1. */
int model_export_check_layers(const struct safetensors_checkpoint *ckpt, int n_layers, const char *path,
			      struct error *err);

#endif
