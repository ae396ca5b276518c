/* float16 and bfloat16 to float32 and back. The scalar conversions live in core
 * (half.h) because the file readers need them too; linalg adds the row forms. */
#include "config.h"

#include "catscope/half.h"
#include "catscope/linalg.h"

float
linalg_f16_to_f32(uint16_t h)
{
	return half_f16_to_f32(h);
}

uint16_t
linalg_f32_to_f16(float f)
{
	return half_f32_to_f16(f);
}

float
linalg_bf16_to_f32(uint16_t h)
{
	return half_bf16_to_f32(h);
}

uint16_t
linalg_f32_to_bf16(float f)
{
	return half_f32_to_bf16(f);
}

void
linalg_f16_to_f32_row(const uint16_t *in, float *out, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = linalg_f16_to_f32(in[i]);
}

void
linalg_bf16_to_f32_row(const uint16_t *in, float *out, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = linalg_bf16_to_f32(in[i]);
}

void
linalg_f32_to_f16_row(const float *in, uint16_t *out, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = linalg_f32_to_f16(in[i]);
}

void
linalg_f32_to_bf16_row(const float *in, uint16_t *out, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = linalg_f32_to_bf16(in[i]);
}
