/* Loading GGUF weight tensors as f32 (dequantised) rows and packed GEMM
 * matrices: shared by the model forwards. */
#ifndef STEM_MODEL_WEIGHTS_H
#define STEM_MODEL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"
#include "gguf.h"

/* The tensor as rows x ne0 f32 (malloc'ed), checking its shape; NULL and
 * err set when missing, misshapen, of an unsupported type or out of memory. */
float *weights_load_rows(const gguf_file *f, const char *name, int64_t ne0, int64_t rows,
                         char *err, size_t err_len);
/* Packs the row-concatenation of count [rows_i][k] tensors; 0 or -1. */
int weights_pack_stack(const gguf_file *f, packed_matrix *p, int64_t k, const char *const *names,
                       const int64_t *rows, int count, char *err, size_t err_len);
/* Appends the tensor's type name to a '+'-separated list (once). */
void weights_note_type(char *types, size_t cap, const gguf_file *f, const char *name);

#endif
