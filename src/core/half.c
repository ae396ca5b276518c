#include "config.h"

#include <string.h>

#include "catscope/half.h"

static float
half_bits_to_f32(uint32_t bits)
{
	float f;

	memcpy(&f, &bits, 4);
	return f;
}

static uint32_t
half_f32_to_bits(float f)
{
	uint32_t bits;

	memcpy(&bits, &f, 4);
	return bits;
}

float
half_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exponent = (h >> 10) & 0x1f;
	uint32_t mantissa = h & 0x3ff;

	if (exponent == 0x1f)
		return half_bits_to_f32(sign | 0x7f800000u | (mantissa << 13));
	if (exponent == 0) {
		/* Subnormal: the value is mantissa * 2^-24 exactly. */
		float value = (float)mantissa * (1.0f / 16777216.0f);

		return sign ? -value : value;
	}
	return half_bits_to_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float
half_bf16_to_f32(uint16_t h)
{
	return half_bits_to_f32((uint32_t)h << 16);
}

uint16_t
half_f32_to_f16(float f)
{
	uint32_t bits = half_f32_to_bits(f);
	uint32_t sign = (bits >> 16) & 0x8000;
	int32_t exponent = (int32_t)((bits >> 23) & 0xff) - 127 + 15;
	uint32_t mantissa = bits & 0x7fffff;

	if (((bits >> 23) & 0xff) == 0xff)
		return (uint16_t)(sign | 0x7c00 | (mantissa ? 0x200 : 0));
	if (exponent >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (exponent <= 0) {
		/* Subnormal or zero in half precision. */
		if (exponent < -10)
			return (uint16_t)sign;
		mantissa |= 0x800000;
		uint32_t shift = (uint32_t)(14 - exponent);
		uint32_t half_mantissa = mantissa >> shift;
		uint32_t rest = mantissa & ((1u << shift) - 1);
		uint32_t halfway = 1u << (shift - 1);

		if (rest > halfway || (rest == halfway && (half_mantissa & 1)))
			half_mantissa++;
		return (uint16_t)(sign | half_mantissa);
	}
	uint32_t half = sign | ((uint32_t)exponent << 10) | (mantissa >> 13);
	uint32_t rest = mantissa & 0x1fff;

	/* A carry out of the mantissa correctly bumps the exponent, up to infinity. */
	if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
		half++;
	return (uint16_t)half;
}

uint16_t
half_f32_to_bf16(float f)
{
	uint32_t bits = half_f32_to_bits(f);

	if ((bits & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((bits >> 16) | 0x40);
	bits += 0x7fff + ((bits >> 16) & 1);
	return (uint16_t)(bits >> 16);
}
