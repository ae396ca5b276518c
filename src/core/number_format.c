#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "catscope/number_format.h"

double
number_drop_negative_zero(double v, int precision)
{
	char text[64];

	if (!isfinite(v) || v > 0.0)
		return v;
	/* Large values do not round to zero, and would not fit the buffer. */
	if (v < -1.0)
		return v;
	snprintf(text, sizeof(text), "%.*f", precision, v);
	return strtod(text, NULL) == 0.0 ? 0.0 : v;
}
