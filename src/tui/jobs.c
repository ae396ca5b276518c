/* Background jobs of the explorer's keys: the end-to-end perplexity (p) and the
 * export of the current settings (E). Each copies the settings into a private
 * analysis, so that the jobs never race the analysis worker or the keys. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catscope/alloc.h"
#include "catscope/eval.h"
#include "catscope/simulate.h"
#include "tui_impl.h"

/* Copies every site's transform and the quantizer of a. */
static void
settings_copy(struct analysis *a, struct transform_spec *specs, struct quant_config *quant)
{
	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < a->n_sites; i++)
		specs[i] = a->sites[i].spec;
	*quant = a->quant;
	pthread_mutex_unlock(&a->lock);
}

/* Returns whether a still has exactly these transforms and this quantizer. */
static bool
settings_current(struct analysis *a, const struct transform_spec *specs,
		 const struct quant_config *quant)
{
	bool same;

	pthread_mutex_lock(&a->lock);
	same = memcmp(&a->quant, quant, sizeof(*quant)) == 0;
	for (int i = 0; same && i < a->n_sites; i++)
		same = transform_spec_equal(&a->sites[i].spec, &specs[i]);
	pthread_mutex_unlock(&a->lock);
	return same;
}

/* Applies the settings to a private analysis. */
static void
settings_apply(struct analysis *priv, const struct transform_spec *specs,
	       const struct quant_config *quant)
{
	analysis_set_quant(priv, quant);
	for (int i = 0; i < priv->n_sites; i++)
		analysis_set_transform(priv, i, &specs[i]);
}

void
tui_jobs_init(struct tui *t)
{
	struct tui_perplexity *p = &t->perplexity;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->run_specs = alloc_zeroed((size_t)t->a->n_sites, sizeof(*p->run_specs));
	p->result_specs = alloc_zeroed((size_t)t->a->n_sites, sizeof(*p->result_specs));
	pthread_mutex_init(&t->export.lock, NULL);
}

/* The progress callback of the perplexity thread. */
static void
perplexity_progress(void *ctx, const char *label, double fraction)
{
	struct tui_perplexity *p = &((struct tui *)ctx)->perplexity;

	(void)label;
	pthread_mutex_lock(&p->lock);
	p->fraction = fraction;
	pthread_mutex_unlock(&p->lock);
}

/* The cancel check of the perplexity thread: a newer p, quitting, or a change of
 * the settings since the run started stops the run at the next window. */
static bool
perplexity_cancelled(void *ctx)
{
	struct tui *t = ctx;
	struct tui_perplexity *p = &t->perplexity;
	bool superseded;

	pthread_mutex_lock(&p->lock);
	superseded = p->stopping || p->claimed != p->requested;
	pthread_mutex_unlock(&p->lock);
	return superseded || !settings_current(t->a, p->run_specs, &p->run_quant);
}

static void
perplexity_set_phase(struct tui_perplexity *p, const char *phase)
{
	pthread_mutex_lock(&p->lock);
	p->phase = phase;
	p->fraction = 0;
	pthread_mutex_unlock(&p->lock);
}

static int
perplexity_score(struct tui *t, const struct model *model, const struct model_hooks *hooks,
		 double *perplexity, struct error *err)
{
	const struct tui_options *opt = t->opt;
	size_t scored = opt->n_heldout_tokens / (size_t)opt->heldout_ctx * (size_t)opt->heldout_ctx;
	struct progress progress;
	struct eval_result result;

	progress_start(&progress, "perplexity", "tok", scored, perplexity_progress, t);
	progress.cancelled = perplexity_cancelled;
	if (eval_perplexity(model, NULL, hooks, opt->heldout_tokens, opt->n_heldout_tokens,
			    opt->heldout_ctx, &progress, &result, err) != 0)
		return -1;
	*perplexity = result.perplexity;
	return 0;
}

/* Scores the full-precision model if not done yet, then the simulation of the
 * claimed settings (run_specs and run_quant). */
static int
perplexity_run(struct tui *t, struct analysis *priv, double *quantized, struct error *err)
{
	struct tui_perplexity *p = &t->perplexity;
	const struct simulation_options options = { SIMULATION_F16, true };
	struct simulation *sim;
	bool has_fp;
	double fp;
	int rc;

	pthread_mutex_lock(&p->lock);
	has_fp = p->has_fp;
	pthread_mutex_unlock(&p->lock);
	if (!has_fp) {
		perplexity_set_phase(p, "full precision");
		if (perplexity_score(t, t->a->model, NULL, &fp, err) != 0)
			return -1;
		pthread_mutex_lock(&p->lock);
		p->fp = fp;
		p->has_fp = true;
		pthread_mutex_unlock(&p->lock);
	}

	/* NOTE: building the simulation (GPTQ included) has no cancellation point, so a
	 * newer request waits for it. */
	perplexity_set_phase(p, "quantizing");
	settings_apply(priv, p->run_specs, &p->run_quant);
	sim = simulation_new_with(priv, &options, err);
	if (sim == NULL)
		return -1;
	if (perplexity_cancelled(t)) {
		simulation_free(sim);
		return error_set(err, "perplexity cancelled before scoring");
	}
	perplexity_set_phase(p, "scoring");
	/* The KV-cache quantizer chains after the site hooks, as eval --kv-bits does. */
	struct export_hook_chain chain;

	export_hook_chain_init(&chain, &sim->hooks, p->run_kv_bits, sim->view.config.head_dim);
	rc = perplexity_score(t, &sim->view, &chain.hooks, quantized, err);
	simulation_free(sim);
	return rc;
}

static void *
perplexity_main(void *arg)
{
	struct tui *t = arg;
	struct tui_perplexity *p = &t->perplexity;
	struct analysis *priv = analysis_new(t->a->model, t->a->stats_fn, t->a->stats_ctx);

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		unsigned claim;
		double quantized = 0;
		struct error err;
		int rc;

		if (p->claimed == p->requested) {
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		claim = p->requested;
		p->claimed = claim;
		p->busy = true;
		pthread_mutex_unlock(&p->lock);

		/* Only this thread writes run_specs, and only here between runs. */
		settings_copy(t->a, p->run_specs, &p->run_quant);
		p->run_kv_bits = t->kv_bits;
		error_clear(&err);
		rc = perplexity_run(t, priv, &quantized, &err);

		pthread_mutex_lock(&p->lock);
		p->busy = false;
		if (rc == 0) {
			p->ppl = quantized;
			p->has_result = true;
			memcpy(p->result_specs, p->run_specs, (size_t)t->a->n_sites * sizeof(*p->run_specs));
			p->result_quant = p->run_quant;
			p->result_kv_bits = p->run_kv_bits;
			tui_status_set(t, false, "perplexity %.4f, full precision %.4f (%+.1f%%) on %zu tokens",
				       quantized, p->fp, 100.0 * (quantized / p->fp - 1.0),
				       t->opt->n_heldout_tokens);
		} else if (p->stopping || claim != p->requested) {
			/* A newer p superseded the run and starts next, so nothing is reported. */
		} else if (!settings_current(t->a, p->run_specs, &p->run_quant)) {
			tui_status_set(t, false, "perplexity cancelled because the settings changed; "
				       "p runs it again");
		} else {
			tui_status_set(t, true, "perplexity failed: %s", err.message);
		}
	}
	pthread_mutex_unlock(&p->lock);
	analysis_free(priv);
	return NULL;
}

void
tui_perplexity_request(struct tui *t)
{
	struct tui_perplexity *p = &t->perplexity;

	if (t->opt->heldout_tokens == NULL) {
		tui_status_set(t, true, "p needs held-out text: start with --heldout FILE [--ctx N]");
		return;
	}
	if (t->a->stats_fn == NULL) {
		tui_status_set(t, true, "p simulates quantization, which needs --calib CACHE");
		return;
	}
	if (!p->running) {
		if (pthread_create(&p->thread, NULL, perplexity_main, t) != 0) {
			tui_status_set(t, true, "cannot start the perplexity thread");
			return;
		}
		p->running = true;
	}
	pthread_mutex_lock(&p->lock);
	p->requested++;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

void
tui_perplexity_label(struct tui *t, char *buf, size_t size)
{
	struct tui_perplexity *p = &t->perplexity;
	bool stale;

	buf[0] = '\0';
	pthread_mutex_lock(&p->lock);
	if (p->has_result) {
		stale = !settings_current(t->a, p->result_specs, &p->result_quant) ||
			p->result_kv_bits != t->kv_bits;
		snprintf(buf, size, "PPL %.4f (FP %.4f, %+.1f%%)%s", p->ppl, p->fp,
			 100.0 * (p->ppl / p->fp - 1.0), stale ? " stale" : "");
	}
	pthread_mutex_unlock(&p->lock);
}

void
tui_jobs_activity(struct tui *t, char *buf, size_t size)
{
	static const char spinner[] = "|/-\\";
	struct tui_perplexity *p = &t->perplexity;
	size_t used;
	bool exporting;

	buf[0] = '\0';
	pthread_mutex_lock(&p->lock);
	if (p->busy)
		snprintf(buf, size, "%c perplexity: %s %.0f%%", spinner[t->frame % 4], p->phase,
			 100.0 * p->fraction);
	pthread_mutex_unlock(&p->lock);

	pthread_mutex_lock(&t->export.lock);
	exporting = t->export.running && !t->export.done;
	pthread_mutex_unlock(&t->export.lock);
	used = strlen(buf);
	if (exporting && used < size)
		snprintf(buf + used, size - used, "%s%c exporting %s (%.0f s)", used > 0 ? " | " : "",
			 spinner[t->frame % 4], t->export.dir, progress_now() - t->export.start);
}

void
tui_export_prompt(struct tui *t)
{
	bool busy;

	pthread_mutex_lock(&t->export.lock);
	busy = t->export.running && !t->export.done;
	pthread_mutex_unlock(&t->export.lock);
	if (busy) {
		tui_status_set(t, true, "an export to %s is still running", t->export.dir);
		return;
	}
	if (t->a->stats_fn == NULL) {
		tui_status_set(t, true, "export needs calibration statistics: start with --calib CACHE");
		return;
	}
	snprintf(t->prompt_default, sizeof(t->prompt_default), "%s", t->export.dir);
	t->prompt_input[0] = '\0';
	t->prompt = TUI_PROMPT_EXPORT_DIR;
}

void
tui_export_confirm(struct tui *t)
{
	struct stat st;

	if (stat(t->prompt_input, &st) == 0) {
		t->prompt = TUI_PROMPT_EXPORT_REPLACE;
		return;
	}
	t->prompt = TUI_PROMPT_NONE;
	tui_export_start(t, false);
}

static void *
export_main(void *arg)
{
	struct tui_export *e = arg;
	struct export_options options;
	int rc;

	export_options_default(&options);
	options.force = e->force;
	options.kv_bits = e->kv_bits;
	/* NOTE: the provenance records the calibration cache but no session file, because
	 * the session may be unsaved or saved later. */
	options.calib_path = e->calib_path;
	error_clear(&e->err);
	/* NOTE: export_write defers SIGINT, SIGTERM and SIGHUP process-wide while it runs,
	 * so the first such signal during an export stops only the export, not the explorer. */
	rc = export_write(e->priv, &options, e->dir, &e->summary, &e->err);
	pthread_mutex_lock(&e->lock);
	e->rc = rc;
	e->done = true;
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

void
tui_export_start(struct tui *t, bool force)
{
	struct tui_export *e = &t->export;
	struct transform_spec *specs = alloc_array((size_t)t->a->n_sites, sizeof(*specs));
	struct quant_config quant;

	snprintf(e->dir, sizeof(e->dir), "%s", t->prompt_input);
	e->force = force;
	e->kv_bits = t->kv_bits;
	e->calib_path = t->opt->calib_name;
	e->priv = analysis_new(t->a->model, t->a->stats_fn, t->a->stats_ctx);
	settings_copy(t->a, specs, &quant);
	settings_apply(e->priv, specs, &quant);
	free(specs);
	e->done = false;
	e->start = progress_now();
	if (pthread_create(&e->thread, NULL, export_main, e) != 0) {
		analysis_free(e->priv);
		e->priv = NULL;
		tui_status_set(t, true, "cannot start the export thread");
		return;
	}
	e->running = true;
}

/* Joins a finished export thread and reports its outcome. */
static void
export_finish(struct tui *t)
{
	struct tui_export *e = &t->export;

	pthread_join(e->thread, NULL);
	e->running = false;
	analysis_free(e->priv);
	e->priv = NULL;
	if (e->rc != 0) {
		tui_status_set(t, true, "export to %s failed: %s", e->dir, e->err.message);
		return;
	}
	tui_status_set(t, false, "exported to %s: %.1f MB in %d files, %.1f s%s", e->dir,
		       (double)e->summary.bytes / 1e6, e->summary.n_files, e->summary.seconds,
		       e->summary.inexact_groups > 0 ? " (some weight groups inexact)" : "");
}

void
tui_jobs_poll(struct tui *t)
{
	bool done;

	if (!t->export.running)
		return;
	pthread_mutex_lock(&t->export.lock);
	done = t->export.done;
	pthread_mutex_unlock(&t->export.lock);
	if (done)
		export_finish(t);
}

void
tui_jobs_stop(struct tui *t)
{
	struct tui_perplexity *p = &t->perplexity;

	if (p->running) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		p->running = false;
	}
	/* NOTE: export_write cannot be cancelled from here, so quitting waits for an
	 * export in progress, which then completes. */
	if (t->export.running)
		export_finish(t);
	free(p->run_specs);
	free(p->result_specs);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&t->export.lock);
}
