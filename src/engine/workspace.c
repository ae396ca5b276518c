#include "config.h"

#include <string.h>

#include "catscope/workspace.h"

static const struct site_stats *
workspace_cache_stats(void *ctx, int block, enum site_kind kind, struct error *err)
{
	struct workspace *ws = ctx;
	const struct site_stats *stats;

	pthread_mutex_lock(&ws->cache_lock);
	stats = calib_cache_site(ws->cache, block, kind, err);
	pthread_mutex_unlock(&ws->cache_lock);
	return stats;
}

int
workspace_open(struct workspace *ws, const char *model_path, const char *cache_path,
	       struct error *err)
{
	memset(ws, 0, sizeof(*ws));
	pthread_mutex_init(&ws->cache_lock, NULL);
	ws->model = model_load(model_path, err);
	if (ws->model == NULL)
		return -1;
	if (cache_path != NULL) {
		ws->cache = calib_cache_open(cache_path, ws->model, err);
		if (ws->cache == NULL) {
			model_free(ws->model);
			ws->model = NULL;
			return -1;
		}
	}
	return 0;
}

void
workspace_close(struct workspace *ws)
{
	calib_cache_close(ws->cache);
	model_free(ws->model);
	pthread_mutex_destroy(&ws->cache_lock);
	memset(ws, 0, sizeof(*ws));
}

struct analysis *
workspace_new_analysis(struct workspace *ws)
{
	if (ws->cache == NULL)
		return analysis_new(ws->model, NULL, NULL);
	return analysis_new(ws->model, workspace_cache_stats, ws);
}
