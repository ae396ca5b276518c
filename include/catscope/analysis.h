/* An analysis: a model, the calibration statistics of its sites, the transform chosen
 * for each site, one quantizer configuration, and the latest diagnostics of every
 * site. The report command, the explorer, sessions and export all work on one.
 *
 * Sites are numbered block-major: index = block * SITE_KIND_COUNT + kind.
 * A background worker (analysis_worker_start) recomputes the sites marked stale; a
 * change made while a site is being computed makes that result stale at once, so a
 * newer request always supersedes an older one. Without calibration statistics the
 * analysis assumes isotropic activations (Sx = I): weight-side numbers are right,
 * activation-side ones are placeholders, and the results carry ANALYSIS_NO_CALIBRATION. */
#ifndef CATSCOPE_ANALYSIS_H
#define CATSCOPE_ANALYSIS_H

#include <pthread.h>
#include <stdbool.h>

#include "catscope/metrics.h"
#include "catscope/model.h"
#include "catscope/quant.h"
#include "catscope/transform.h"

/* Returns the statistics of a site, or NULL with err set; the pointer stays valid for
 * the life of the source. Called from the worker thread, never concurrently. */
typedef const struct site_stats *(*analysis_stats_fn)(void *ctx, int block, enum site_kind kind,
						      struct error *err);

/* Added to site_result.flags when the numbers assume isotropic activations. */
#define ANALYSIS_NO_CALIBRATION 0x10000u

enum analysis_state {
	ANALYSIS_STALE,     /* needs computing */
	ANALYSIS_RUNNING,
	ANALYSIS_DONE,
	ANALYSIS_FAILED,    /* error contains the reason */
};

#define ANALYSIS_TRANSFORMS_KEPT 2

struct analysis_site {
	int block;
	enum site_kind kind;
	struct transform_spec spec;
	enum analysis_state state;
	struct site_result result;     /* valid when state is ANALYSIS_DONE */
	char error[ERROR_MESSAGE_MAX];
	char layer_names[SITE_LAYERS_MAX][32];
	unsigned version;              /* bumped by every change to the site or the quantizer */
	struct engine_invariants invariants; /* what no setting changes, kept across evaluations */
	/* The last transforms built for the site, so that a change of quantizer or a
	 * return to an earlier transform skips the build (the CAT eigendecompositions). */
	struct transform transforms[ANALYSIS_TRANSFORMS_KEPT];
	unsigned long transform_used[ANALYSIS_TRANSFORMS_KEPT]; /* 0: slot empty */
	bool prebuilt;                 /* the idle worker tried to build its default CAT */
	unsigned long last_used;       /* analysis tick of the last evaluation, for evicting
					* kept outputs and transforms */
};

/* Bytes of sample outputs (see engine_invariants) and built transforms the analysis
 * keeps over all sites. Above it the least recently evaluated sites lose theirs and
 * pay one more GEMM and a transform build at their next evaluation. An 8B-class model
 * needs about 25 MB of outputs for an attention input site and 120 MB for a
 * feed-forward input site, and 4 to 15 MB per block-128 CAT transform. */
#define ANALYSIS_CACHE_BUDGET ((size_t)1 << 30)

struct analysis {
	const struct model *model;
	analysis_stats_fn stats_fn;    /* NULL: no calibration */
	void *stats_ctx;
	struct quant_config quant;
	int n_sites;
	struct analysis_site *sites;

	pthread_mutex_t lock;          /* guards sites[], quant and the worker fields */
	pthread_cond_t wake;
	pthread_t worker;
	bool worker_running;
	bool stopping;
	unsigned completed;            /* results finished or refined, for pollers */
	unsigned long tick;            /* evaluations so far, for last_used */
	struct engine_scratch worker_scratch; /* the worker's own; released when idle */
	struct site_stats **isotropic; /* per width, when there is no calibration */
	int n_isotropic;
};

struct analysis *analysis_new(const struct model *model, analysis_stats_fn stats_fn,
			      void *stats_ctx);
void analysis_free(struct analysis *a);

int analysis_site_index(int block, enum site_kind kind);
/* The layers of a site as the engine takes them (weights borrowed from the model). */
void analysis_site_layers(const struct analysis *a, int index, struct site_layers *out);

/* Changing a site's transform or the quantizer marks the affected sites stale. */
void analysis_set_transform(struct analysis *a, int index, const struct transform_spec *spec);
void analysis_set_quant(struct analysis *a, const struct quant_config *qc);

/* Computes one site now, on the calling thread, and stores the result with every
 * measured SQNR. The background worker first stores results without the measured
 * weight-only and activation-only SQNRs (METRICS_FLAG_PARTS_SKIPPED), which costs a
 * third of the products, and adds them once no site is stale. */
int analysis_compute(struct analysis *a, int index, struct error *err);
/* Computes every stale site now; a failing site keeps its error and the others are
 * still computed. Returns -1 with the first failure in err. */
int analysis_compute_all(struct analysis *a, struct error *err);
/* Evaluates a site with another transform without storing anything (for comparing
 * transforms side by side). */
int analysis_evaluate_with(struct analysis *a, int index, const struct transform_spec *spec,
			   struct site_result *out, struct error *err);

/* Starts the worker that computes stale sites in the background. */
void analysis_worker_start(struct analysis *a);
void analysis_worker_stop(struct analysis *a);
/* Sites still stale or running, for a progress indicator. */
int analysis_pending(struct analysis *a);

#endif
