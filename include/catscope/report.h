/* Batch output of an analysis: one row per site with every diagnostic, as an aligned
 * table, CSV or JSON. Used by "catscope report" and headless session replay, so both
 * print the same numbers as the explorer. */
#ifndef CATSCOPE_REPORT_H
#define CATSCOPE_REPORT_H

#include <stdio.h>

#include "catscope/analysis.h"

enum report_format { REPORT_TABLE, REPORT_CSV, REPORT_JSON };

/* Parses "table", "csv" or "json". */
int report_format_parse(const char *text, enum report_format *out, struct error *err);

/* Writes every computed site of each analysis (one per compared transform) and a
 * summary line per analysis. */
void report_write(FILE *out, struct analysis *const *analyses, int n_analyses,
		  enum report_format format);

#endif
