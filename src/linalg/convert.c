/* float16 and bfloat16 to float32 and back, bit by bit so that no compiler support for
 * _Float16 is needed. */
#include "config.h"

#include <string.h>

#include "catscope/linalg.h"

static float
bits_to_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static uint32_t
f32_to_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

float
linalg_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;

	if (exp == 0x1f)
		return bits_to_f32(sign | 0x7f800000u | (mant << 13));
	if (exp == 0) {
		/* Subnormal float16: mant * 2^-24, exact in float32. */
		float v = (float)mant * 5.9604644775390625e-08f;

		return sign ? -v : v;
	}
	return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t
linalg_f32_to_f16(float f)
{
	uint32_t u = f32_to_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t abs = u & 0x7fffffffu;
	int32_t exp;
	uint32_t mant, half, rest;

	if (abs >= 0x7f800000u)
		return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0);
	if (abs >= 0x477ff000u) /* rounds to a value above 65504 */
		return sign | 0x7c00;
	exp = (int32_t)(abs >> 23) - 127 + 15;
	mant = (abs & 0x7fffff) | 0x800000;
	if (exp <= 0) {
		/* Subnormal or zero: shift the full significand into place. */
		int shift = 14 - exp;

		if (shift > 24)
			return sign;
		half = mant >> shift;
		rest = mant & ((1u << shift) - 1);
		if (rest > (1u << (shift - 1)) || (rest == (1u << (shift - 1)) && (half & 1)))
			half++;
		return sign | (uint16_t)half;
	}
	half = ((uint32_t)exp << 10) | ((mant >> 13) & 0x3ff);
	rest = mant & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
		half++; /* a carry into the exponent is the correct rounding */
	return sign | (uint16_t)half;
}

float
linalg_bf16_to_f32(uint16_t h)
{
	return bits_to_f32((uint32_t)h << 16);
}

uint16_t
linalg_f32_to_bf16(float f)
{
	uint32_t u = f32_to_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
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
