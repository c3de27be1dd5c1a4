/* Dequantisation of the ggml tensor types found in GGUF files (F32, F16,
 * Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K) to f32, one row at a time. */
#ifndef STEM_MODEL_DEQUANT_H
#define STEM_MODEL_DEQUANT_H

#include <stdint.h>

float half_to_float(uint16_t h);
/* Bytes one row of ne0 elements takes; 0 for an unknown type or a row
 * length that is not a multiple of the block. */
uint64_t ggml_type_row_bytes(uint32_t type, uint64_t ne0);
/* Writes ne0 floats; returns 0, or -1 for an unknown type. */
int dequantize_row(uint32_t type, const uint8_t *src, float *dst, uint64_t ne0);
const char *ggml_type_name(uint32_t type);

#endif
