/* Formatting of analysis results for scripts: table, CSV and JSON. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <jansson.h>

#include "catscope/report.h"
#include "catscope/number_format.h"

int
report_format_parse(const char *text, enum report_format *out, struct error *err)
{
	if (strcmp(text, "table") == 0)
		*out = REPORT_TABLE;
	else if (strcmp(text, "csv") == 0)
		*out = REPORT_CSV;
	else if (strcmp(text, "json") == 0)
		*out = REPORT_JSON;
	else
		return error_set(err, "unknown format '%s'; use table, csv or json", text);
	return 0;
}

static double
report_db(double ratio)
{
	return ratio > 0.0 ? 10.0 * log10(ratio) : NAN;
}

/* The columns, in order: name and how to read the value from a site. */
struct report_column {
	const char *name;
	double (*value)(const struct site_result *r);
};

static double col_cx(const struct site_result *r) { return report_db(r->c_x); }
static double col_cx_raw(const struct site_result *r) { return report_db(r->c_x_raw); }
static double col_cw(const struct site_result *r) { return report_db(r->c_w); }
static double col_a(const struct site_result *r) { return report_db(r->alignment); }
static double col_a_raw(const struct site_result *r) { return report_db(r->alignment_raw); }
static double col_best1(const struct site_result *r) { return report_db(r->best_1); }
static double col_bestk(const struct site_result *r) { return report_db(r->best_k); }
static double col_best(const struct site_result *r) { return report_db(r->best_full); }
static double col_headroom(const struct site_result *r) { return r->headroom_db; }
static double col_pred(const struct site_result *r) { return r->predicted.total_db; }
static double col_meas(const struct site_result *r) { return r->measured.total_db; }
static double col_pred_w(const struct site_result *r) { return r->predicted.weight_db; }
static double col_meas_w(const struct site_result *r) { return r->measured.weight_db; }
static double col_pred_x(const struct site_result *r) { return r->predicted.act_db; }
static double col_meas_x(const struct site_result *r) { return r->measured.act_db; }
static double col_gap(const struct site_result *r) { return r->gap_db; }

static const struct report_column report_columns[] = {
	{ "cx_db", col_cx },          { "cx_raw_db", col_cx_raw },   { "cw_db", col_cw },
	{ "align_db", col_a },        { "align_raw_db", col_a_raw }, { "best1_db", col_best1 },
	{ "bestk_db", col_bestk },    { "best_db", col_best },       { "headroom_db", col_headroom },
	{ "pred_db", col_pred },      { "meas_db", col_meas },       { "pred_w_db", col_pred_w },
	{ "meas_w_db", col_meas_w },  { "pred_x_db", col_pred_x },   { "meas_x_db", col_meas_x },
	{ "gap_db", col_gap },
};
#define REPORT_N_COLUMNS ((int)(sizeof(report_columns) / sizeof(report_columns[0])))

static void
report_site_label(const struct analysis_site *s, char *buf, size_t size)
{
	snprintf(buf, size, "blk.%d.%s", s->block, site_kind_name(s->kind));
}

/* Mean and minimum measured SQNR over the computed sites, in dB. */
static void
report_summary(const struct analysis *a, double *mean_db, double *min_db, int *min_site, int *n)
{
	double sum = 0.0;

	*n = 0;
	*min_db = INFINITY;
	*min_site = -1;
	for (int i = 0; i < a->n_sites; i++) {
		double v = a->sites[i].result.measured.total_db;

		if (a->sites[i].state != ANALYSIS_DONE || !isfinite(v))
			continue;
		sum += v;
		(*n)++;
		if (v < *min_db) {
			*min_db = v;
			*min_site = i;
		}
	}
	*mean_db = *n ? sum / *n : NAN;
}

/* Writes the summary label of a, which is its transform when every site has the same
 * one and else "mixed". For mixed sites, counts gets each transform's count in the
 * order of first use, such as "hadamard 1, none 14, cat 5", and is empty otherwise. */
static void
report_transform_label(const struct analysis *a, char *label, size_t label_size, char *counts,
		       size_t counts_size)
{
	char first[48] = "", spec[48], other[48];
	size_t used = 0;

	snprintf(label, label_size, "-");
	counts[0] = '\0';
	if (a->n_sites == 0)
		return;
	transform_spec_format(&a->sites[0].spec, first, sizeof(first));
	snprintf(label, label_size, "%s", first);
	for (int i = 0; i < a->n_sites; i++) {
		bool seen = false;
		int n = 0;

		transform_spec_format(&a->sites[i].spec, spec, sizeof(spec));
		for (int j = 0; j < i && !seen; j++) {
			transform_spec_format(&a->sites[j].spec, other, sizeof(other));
			seen = strcmp(spec, other) == 0;
		}
		if (seen)
			continue;
		for (int j = i; j < a->n_sites; j++) {
			transform_spec_format(&a->sites[j].spec, other, sizeof(other));
			n += strcmp(spec, other) == 0;
		}
		if (n == a->n_sites)
			return;
		snprintf(label, label_size, "mixed");
		if (used < counts_size)
			used += (size_t)snprintf(counts + used, counts_size - used, "%s%s %d",
						 used > 0 ? ", " : "", spec, n);
	}
}

static void
report_table(FILE *out, struct analysis *const *analyses, int n_analyses)
{
	static const int shown[] = { 0, 2, 3, 8, 9, 10, 12, 14, 15 };

	fprintf(out, "%-16s %5s %-10s", "site", "d", "transform");
	for (size_t j = 0; j < sizeof(shown) / sizeof(shown[0]); j++)
		fprintf(out, " %11s", report_columns[shown[j]].name);
	fprintf(out, "  flags\n");
	for (int k = 0; k < n_analyses; k++) {
		const struct analysis *a = analyses[k];

		for (int i = 0; i < a->n_sites; i++) {
			const struct analysis_site *s = &a->sites[i];
			char label[48], spec[48];

			report_site_label(s, label, sizeof(label));
			transform_spec_format(&s->spec, spec, sizeof(spec));
			if (s->state != ANALYSIS_DONE) {
				fprintf(out, "%-16s %5s %-10s  failed: %s\n", label, "", spec, s->error);
				continue;
			}
			fprintf(out, "%-16s %5d %-10s", label, s->result.dim, spec);
			for (size_t j = 0; j < sizeof(shown) / sizeof(shown[0]); j++)
				fprintf(out, " %11.2f",
					number_drop_negative_zero(report_columns[shown[j]].value(&s->result), 2));
			fprintf(out, "  0x%x\n", s->result.flags);
		}
	}
	for (int k = 0; k < n_analyses; k++) {
		double mean, min;
		int min_site, n;
		char spec[48], counts[512], label[48] = "-";

		report_summary(analyses[k], &mean, &min, &min_site, &n);
		report_transform_label(analyses[k], spec, sizeof(spec), counts, sizeof(counts));
		if (min_site >= 0)
			report_site_label(&analyses[k]->sites[min_site], label, sizeof(label));
		if (n == 0)
			fprintf(out, "summary %-10s no measured SQNR: the sites have no calibration sample "
				"(pass --calib CACHE)", spec);
		else
			fprintf(out, "summary %-10s sites %d  mean measured SQNR %.2f dB  worst %.2f dB at %s",
				spec, n, number_drop_negative_zero(mean, 2), number_drop_negative_zero(min, 2),
				label);
		if (counts[0] != '\0')
			fprintf(out, "  transforms %s", counts);
		fputc('\n', out);
	}
}

static void
report_csv(FILE *out, struct analysis *const *analyses, int n_analyses)
{
	fprintf(out, "block,site,dim,transform,state");
	for (int j = 0; j < REPORT_N_COLUMNS; j++)
		fprintf(out, ",%s", report_columns[j].name);
	fprintf(out, ",flags\n");
	for (int k = 0; k < n_analyses; k++) {
		const struct analysis *a = analyses[k];

		for (int i = 0; i < a->n_sites; i++) {
			const struct analysis_site *s = &a->sites[i];
			char spec[48];

			transform_spec_format(&s->spec, spec, sizeof(spec));
			fprintf(out, "%d,%s,%d,%s,%s", s->block, site_kind_name(s->kind), s->result.dim, spec,
				s->state == ANALYSIS_DONE ? "ok" : "failed");
			for (int j = 0; j < REPORT_N_COLUMNS; j++) {
				double v = report_columns[j].value(&s->result);

				if (s->state == ANALYSIS_DONE && isfinite(v))
					fprintf(out, ",%.6f", v);
				else
					fprintf(out, ",");
			}
			fprintf(out, ",%u\n", s->result.flags);
		}
	}
}

static json_t *
report_number(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static void
report_json(FILE *out, struct analysis *const *analyses, int n_analyses)
{
	json_t *root = json_object();
	json_t *runs = json_array();

	for (int k = 0; k < n_analyses; k++) {
		const struct analysis *a = analyses[k];
		json_t *run = json_object();
		json_t *sites = json_array();
		char text[64];
		double mean, min;
		int min_site, n;

		quant_params_format(&a->quant.weight, text, sizeof(text));
		json_object_set_new(run, "weights", json_string(text));
		quant_params_format(&a->quant.act, text, sizeof(text));
		json_object_set_new(run, "activations", json_string(text));
		json_object_set_new(run, "rounding", json_string(a->quant.rounding == QUANT_RTN ? "rtn" : "gptq"));
		for (int i = 0; i < a->n_sites; i++) {
			const struct analysis_site *s = &a->sites[i];
			json_t *site = json_object();

			json_object_set_new(site, "block", json_integer(s->block));
			json_object_set_new(site, "site", json_string(site_kind_name(s->kind)));
			transform_spec_format(&s->spec, text, sizeof(text));
			json_object_set_new(site, "transform", json_string(text));
			if (s->state != ANALYSIS_DONE) {
				json_object_set_new(site, "error", json_string(s->error));
				json_array_append_new(sites, site);
				continue;
			}
			json_object_set_new(site, "dim", json_integer(s->result.dim));
			for (int j = 0; j < REPORT_N_COLUMNS; j++)
				json_object_set_new(site, report_columns[j].name,
						    report_number(report_columns[j].value(&s->result)));
			json_object_set_new(site, "flags", json_integer(s->result.flags));
			json_t *layers = json_array();

			for (int l = 0; l < s->result.n_layers; l++) {
				const struct layer_result *lr = &s->result.layer[l];
				json_t *layer = json_object();

				json_object_set_new(layer, "name", json_string(lr->name ? lr->name : ""));
				json_object_set_new(layer, "rows", json_integer(lr->rows));
				json_object_set_new(layer, "cw_db", report_number(report_db(lr->c_w)));
				json_object_set_new(layer, "align_db", report_number(report_db(lr->alignment)));
				json_object_set_new(layer, "pred_db", report_number(lr->predicted.total_db));
				json_object_set_new(layer, "meas_db", report_number(lr->measured.total_db));
				json_array_append_new(layers, layer);
			}
			json_object_set_new(site, "layers", layers);
			json_array_append_new(sites, site);
		}
		json_object_set_new(run, "sites", sites);
		report_summary(a, &mean, &min, &min_site, &n);
		json_object_set_new(run, "mean_meas_db", report_number(mean));
		json_object_set_new(run, "worst_meas_db", report_number(min));
		json_array_append_new(runs, run);
	}
	json_object_set_new(root, "runs", runs);
	json_dumpf(root, out, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
	fputc('\n', out);
	json_decref(root);
}

void
report_write(FILE *out, struct analysis *const *analyses, int n_analyses, enum report_format format)
{
	if (format == REPORT_CSV)
		report_csv(out, analyses, n_analyses);
	else if (format == REPORT_JSON)
		report_json(out, analyses, n_analyses);
	else
		report_table(out, analyses, n_analyses);
}
