/* Internal to the export part: the steps export.c composes. */
#ifndef CATSCOPE_EXPORT_IMPL_H
#define CATSCOPE_EXPORT_IMPL_H

#include <jansson.h>

#include "catscope/export.h"
#include "catscope/safetensors_write.h"
#include "catscope/simulate.h"

/* Hugging Face names of the linear layers, after "model.layers.N.". */
extern const char *const export_linear_names[LINEAR_COUNT];

/* Finds a step and codes that reproduce one group of fake-quantized values v bit for
 * bit: ((float)codes[i] - zero) * step == v[i]. Returns 0 when exact; otherwise
 * quantizes v again with quant_group_step and returns 1. */
int export_recover_group(const float *v, int n, const struct quant_params *p, uint8_t *codes,
			 float *step, int32_t *zero);


/* Adds the packed weights of every linear layer, the site transforms and the
 * unquantized tensors of sim's model to w. Counts inexact groups in *inexact. Calls
 * stop between layers and fails with "interrupted" when it returns nonzero. */
int export_add_tensors(struct safetensors_writer *w, const struct simulation *sim,
		       const struct quant_config *qc, const struct export_options *opt,
		       int *inexact, struct error *err);

/* Builds config.json: Hugging Face keys, quantization_config and the catscope object. */
json_t *export_build_config(const struct analysis *a, const struct export_options *opt,
			    const char *tokenizer_file);

/* Writes or copies the tokenizer of model into dir; stores the main file's name. */
int export_write_tokenizer(const struct model *model, const char *dir, char ***files,
			   int *n_files, const char **tokenizer_file, struct error *err);

#endif
