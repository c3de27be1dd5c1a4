/* f32 matrix products for the model's linear layers: C[M,N] = A[M,K] W^T
 * with W [N,K] (one output feature per row, as stored in GGUF), W packed
 * once into 16-column panels so the inner kernel streams it. OpenMP. */
#ifndef STEM_MODEL_GEMM_H
#define STEM_MODEL_GEMM_H

#include <stdint.h>

typedef struct packed_matrix {
    int64_t n, k;   /* output features, input features */
    float *panels;  /* ceil(n/16) panels of [k][16], zero-padded columns */
} packed_matrix;

/* w is [n][k] row-major; returns 0 or -1 (out of memory). */
int packed_matrix_init(packed_matrix *p, const float *w, int64_t n, int64_t k);
void packed_matrix_free(packed_matrix *p);
/* c[M][ldc] (first n columns written) = a[M][k] (row stride lda) * W^T */
void gemm_packed(const float *a, int64_t lda, int64_t m, const packed_matrix *w, float *c,
                 int64_t ldc);

#endif
