#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GEMM_HAVE_AVX2_PATH 1
#endif

enum { PANEL = 16, MR = 6, M_CHUNK = 96 };

int packed_matrix_init(packed_matrix *p, const float *w, int64_t n, int64_t k)
{
    int64_t np = (n + PANEL - 1) / PANEL;
    p->n = n;
    p->k = k;
    p->panels = aligned_alloc(64, (size_t)(np * k * PANEL) * sizeof(float));
    if (!p->panels) return -1;
    for (int64_t pi = 0; pi < np; pi++) {
        float *dst = p->panels + pi * k * PANEL;
        for (int64_t kk = 0; kk < k; kk++)
            for (int j = 0; j < PANEL; j++) {
                int64_t row = pi * PANEL + j;
                dst[kk * PANEL + j] = row < n ? w[row * k + kk] : 0.0f;
            }
    }
    return 0;
}

void packed_matrix_free(packed_matrix *p)
{
    free(p->panels);
    memset(p, 0, sizeof *p);
}

/* c (MR x 16, row stride PANEL) = a (MR rows, stride lda) * panel */
static void kernel_scalar(const float *a, int64_t lda, const float *panel, int64_t k, float *c)
{
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < PANEL; j++) c[r * PANEL + j] = 0.0f;
    for (int64_t kk = 0; kk < k; kk++)
        for (int r = 0; r < MR; r++) {
            float av = a[r * lda + kk];
            for (int j = 0; j < PANEL; j++) c[r * PANEL + j] += av * panel[kk * PANEL + j];
        }
}

#ifdef GEMM_HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) static void kernel_avx2(const float *a, int64_t lda,
                                                            const float *panel, int64_t k,
                                                            float *c)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda,
                *a4 = a + 4 * lda, *a5 = a + 5 * lda;
    for (int64_t kk = 0; kk < k; kk++) {
        __m256 b0 = _mm256_load_ps(panel + kk * PANEL);
        __m256 b1 = _mm256_load_ps(panel + kk * PANEL + 8);
        __m256 av = _mm256_broadcast_ss(a0 + kk);
        c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a1 + kk);
        c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a2 + kk);
        c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a3 + kk);
        c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a4 + kk);
        c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a5 + kk);
        c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    }
    _mm256_storeu_ps(c + 0 * PANEL, c00); _mm256_storeu_ps(c + 0 * PANEL + 8, c01);
    _mm256_storeu_ps(c + 1 * PANEL, c10); _mm256_storeu_ps(c + 1 * PANEL + 8, c11);
    _mm256_storeu_ps(c + 2 * PANEL, c20); _mm256_storeu_ps(c + 2 * PANEL + 8, c21);
    _mm256_storeu_ps(c + 3 * PANEL, c30); _mm256_storeu_ps(c + 3 * PANEL + 8, c31);
    _mm256_storeu_ps(c + 4 * PANEL, c40); _mm256_storeu_ps(c + 4 * PANEL + 8, c41);
    _mm256_storeu_ps(c + 5 * PANEL, c50); _mm256_storeu_ps(c + 5 * PANEL + 8, c51);
}
#endif

void gemm_packed(const float *a, int64_t lda, int64_t m, const packed_matrix *w, float *c,
                 int64_t ldc)
{
    int use_avx2 = 0;
#ifdef GEMM_HAVE_AVX2_PATH
    use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    const int64_t k = w->k, np = (w->n + PANEL - 1) / PANEL;
    const int64_t nchunks = (m + M_CHUNK - 1) / M_CHUNK;
    /* the panel loop is inside the chunk loop so an A chunk stays in cache
     * while all panels stream past it */
#pragma omp parallel
    {
        float tile[MR * PANEL];
        float *apad = malloc((size_t)(MR * k) * sizeof(float)); /* tail rows, zero padded */
#pragma omp for collapse(2) schedule(static)
        for (int64_t ch = 0; ch < nchunks; ch++)
            for (int64_t pi = 0; pi < np; pi++) {
                const float *panel = w->panels + pi * k * PANEL;
                int64_t cols = w->n - pi * PANEL < PANEL ? w->n - pi * PANEL : PANEL;
                int64_t r_end = (ch + 1) * M_CHUNK < m ? (ch + 1) * M_CHUNK : m;
                for (int64_t r0 = ch * M_CHUNK; r0 < r_end; r0 += MR) {
                    int64_t rows = r_end - r0 < MR ? r_end - r0 : MR;
                    const float *ablk = a + r0 * lda;
                    int64_t ld = lda;
                    if (rows < MR) {
                        if (!apad) continue; /* allocation failed: rows left unwritten */
                        memset(apad, 0, (size_t)(MR * k) * sizeof(float));
                        for (int64_t r = 0; r < rows; r++)
                            memcpy(apad + r * k, a + (r0 + r) * lda, (size_t)k * sizeof(float));
                        ablk = apad;
                        ld = k;
                    }
#ifdef GEMM_HAVE_AVX2_PATH
                    if (use_avx2)
                        kernel_avx2(ablk, ld, panel, k, tile);
                    else
#endif
                        kernel_scalar(ablk, ld, panel, k, tile);
                    for (int64_t r = 0; r < rows; r++)
                        memcpy(c + (r0 + r) * ldc + pi * PANEL, tile + r * PANEL,
                               (size_t)cols * sizeof(float));
                }
            }
        free(apad);
    }
    (void)use_avx2;
}
