/* Helpers for printing numbers in tables. */
#ifndef CATSCOPE_NUMBER_FORMAT_H
#define CATSCOPE_NUMBER_FORMAT_H

/* Returns v, or +0.0 when printf's "%.*f" with that precision would print v as zero,
 * so that a small negative value prints as "0.00" and not "-0.00". NaN and the
 * infinities are returned unchanged. */
double number_drop_negative_zero(double v, int precision);

#endif
