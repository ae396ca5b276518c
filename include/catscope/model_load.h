/* Internal to the model part: the loaders for each file format and the steps they share. */
#ifndef CATSCOPE_MODEL_LOAD_H
#define CATSCOPE_MODEL_LOAD_H

#include <stdbool.h>

#include "catscope/model.h"

struct model *model_load_gguf(const char *path, struct error *err);
/* Loads a Hugging Face directory: config.json, model.safetensors (or shards listed in
 * model.safetensors.index.json) and tokenizer.json. */
struct model *model_load_hf(const char *dir, struct error *err);
/* True if dir/config.json has a "catscope" object, as catscope export writes. */
bool model_is_export(const char *dir);
/* Loads a directory written by catscope export, with its integer weights dequantized.
 * The model needs export_runtime_open()'s hooks to compute what was exported. */
struct model *model_load_export(const char *dir, struct error *err);

/* Rejects hyper-parameters that no real model has, before any buffer is sized by them. */
int model_check_config(const struct model_config *config, const char *path, struct error *err);
/* Multiplies column i of the rows x cols matrix w by gain[i]. */
void model_fold_gain(float *w, int rows, int cols, const float *gain);
void model_compute_fingerprint(struct model *model);

#endif
