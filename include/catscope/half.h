/* 16-bit floating-point formats (IEEE half and bfloat16) to and from float32. */
#ifndef CATSCOPE_HALF_H
#define CATSCOPE_HALF_H

#include <stdint.h>

float half_f16_to_f32(uint16_t h);
float half_bf16_to_f32(uint16_t h);
/* Round to nearest even; NaN stays NaN, overflow becomes infinity. */
uint16_t half_f32_to_f16(float f);
uint16_t half_f32_to_bf16(float f);

#endif
