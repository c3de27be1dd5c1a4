/* Host-side dtype conversions for the tool (inputs, outputs, error checks).
 * f16 and bf16 round to nearest even, as the library's outputs do. */
#ifndef STEM_TOOL_CONVERT_H
#define STEM_TOOL_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "stem.h"

uint16_t tool_f32_to_f16(float f);
float tool_f16_to_f32(uint16_t h);
uint16_t tool_f32_to_bf16(float f);
float tool_bf16_to_f32(uint16_t h);

/* count elements of dtype (f32, f16, bf16) <-> f32. Return 0, or -1 for
 * a dtype they do not handle. */
int tool_to_f32(const void *src, stem_dtype dtype, size_t count, float *dst);
int tool_from_f32(const float *src, stem_dtype dtype, size_t count, void *dst);

/* "f32" | "f16" | "bf16" (also "float32", "float16", "bfloat16"). */
int tool_parse_dtype(const char *s, stem_dtype *out);

#endif
