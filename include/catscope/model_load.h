/* Internal to the model part: the loaders for each file format and the steps they share. */
#ifndef CATSCOPE_MODEL_LOAD_H
#define CATSCOPE_MODEL_LOAD_H

#include "catscope/model.h"

struct model *model_load_gguf(const char *path, struct error *err);
/* Loads a Hugging Face directory: config.json, model.safetensors (or shards listed in
 * model.safetensors.index.json) and tokenizer.json. */
struct model *model_load_hf(const char *dir, struct error *err);

/* Rejects hyper-parameters that no real model has, before any buffer is sized by them. */
int model_check_config(const struct model_config *config, const char *path, struct error *err);
/* Multiplies column i of the rows x cols matrix w by gain[i]. */
void model_fold_gain(float *w, int rows, int cols, const float *gain);
void model_compute_fingerprint(struct model *model);

#endif
