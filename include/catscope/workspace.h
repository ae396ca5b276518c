/* The inputs of every analysis command: a model and, optionally, its calibration cache,
 * with the adapter that lets an analysis read site statistics from the cache. */
#ifndef CATSCOPE_WORKSPACE_H
#define CATSCOPE_WORKSPACE_H

#include <pthread.h>

#include "catscope/analysis.h"
#include "catscope/calib_cache.h"
#include "catscope/model.h"

struct workspace {
	struct model *model;
	struct calib_cache *cache;   /* NULL without calibration */
	pthread_mutex_t cache_lock;  /* the cache loads records lazily and is not thread-safe */
};

/* Loads the model and opens the cache (cache_path may be NULL); a cache made for
 * another model is rejected with both fingerprints in the message. */
int workspace_open(struct workspace *ws, const char *model_path, const char *cache_path,
		   struct error *err);
void workspace_close(struct workspace *ws);

/* A new analysis reading its statistics from the workspace's cache (or assuming
 * isotropic activations without one). */
struct analysis *workspace_new_analysis(struct workspace *ws);

#endif
