/*
 * The AMX pair GEMM's tile loops (backends/cpu/cpu_amx_gemm.h) on a plain C
 * model of the tile registers, against a double-precision GEMM of the same
 * bf16 values: checks the tile configuration (every tile 16 x 64 bytes),
 * the A / B (VNNI) / C addressing and strides, and the split between tiles
 * and edge code, on any machine. The real tiles run only on AMX CPUs
 * (conformance there, STEM_CPU_MAX_ISA=amx).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tile model: 8 tiles of 16 rows x 64 bytes. */
static uint8_t tiles[8][16][64];
static int tiles_configured, dp_count, edge_count;

static void tile_load(int t, const void *p, ptrdiff_t stride)
{
    for (int r = 0; r < 16; r++)
        memcpy(tiles[t][r], (const char *)p + r * stride, 64);
}

static void tile_store(int t, void *p, ptrdiff_t stride)
{
    for (int r = 0; r < 16; r++)
        memcpy((char *)p + r * stride, tiles[t][r], 64);
}

static float bf16_lo(uint32_t u)
{
    const uint32_t b = u << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static float bf16_hi(uint32_t u)
{
    const uint32_t b = u & 0xffff0000u;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* TDPBF16PS: C[m][n] += sum_k A.pair[m][k] . B.pair[k][n] (16 x 16 x 16 pairs). */
static void tile_dp(int c, int a, int b)
{
    dp_count++;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float acc;
            memcpy(&acc, &tiles[c][m][4 * n], 4);
            for (int k = 0; k < 16; k++) {
                uint32_t x, y;
                memcpy(&x, &tiles[a][m][4 * k], 4);
                memcpy(&y, &tiles[b][k][4 * n], 4);
                acc += bf16_lo(x) * bf16_lo(y) + bf16_hi(x) * bf16_hi(y);
            }
            memcpy(&tiles[c][m][4 * n], &acc, 4);
        }
}

static void edge(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda, const uint32_t *Bp,
                 ptrdiff_t panel_stride, float *C, ptrdiff_t ldc, int accumulate);

#define AMX_NR 32
#define TILE_ZERO(t) memset(tiles[t], 0, sizeof tiles[t])
#define TILE_LOAD(t, p, stride) tile_load(t, p, stride)
#define TILE_STORE(t, p, stride) tile_store(t, p, stride)
#define TILE_DP(c, a, b) tile_dp(c, a, b)
#define TILE_BEGIN() (tiles_configured++)
#define TILE_END() (void)0
#define AMX_EDGE edge

#include "../backends/cpu/cpu_amx_gemm.h"

/* The gemm_bf16 contract, plainly. */
static void edge(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda, const uint32_t *Bp,
                 ptrdiff_t panel_stride, float *C, ptrdiff_t ldc, int accumulate)
{
    edge_count++;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float acc = accumulate ? C[i * ldc + j] : 0.0f;
            for (int p = 0; p < kp; p++) {
                const uint32_t x = A[i * lda + p];
                const uint32_t y = Bp[(j / AMX_NR) * panel_stride + p * AMX_NR + j % AMX_NR];
                acc += bf16_lo(x) * bf16_lo(y) + bf16_hi(x) * bf16_hi(y);
            }
            C[i * ldc + j] = acc;
        }
}

static uint32_t rng = 12345;
static uint16_t rand_bf16(void)
{
    rng = rng * 1664525u + 1013904223u;
    const float f = (float)((int)(rng >> 8) % 2001 - 1000) / 256.0f; /* exact in bf16 */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static int check(int m, int n, int kp, int accumulate)
{
    const int lda = kp + 3, ldc = n + 5; /* leading dimensions past the sizes */
    const ptrdiff_t ps = (ptrdiff_t)AMX_NR * kp + 64;
    uint32_t *A = calloc((size_t)m * lda, 4), *B = calloc((size_t)(n / AMX_NR) * ps, 4);
    float *C = malloc((size_t)m * ldc * 4);
    /* Logical matrices: a[i][k] (k < 2 kp), b[k][j]. */
    double *a = malloc(sizeof(double) * m * 2 * kp), *b = malloc(sizeof(double) * 2 * kp * n);
    for (int i = 0; i < m; i++)
        for (int k = 0; k < 2 * kp; k++) {
            const uint16_t h = rand_bf16();
            a[i * 2 * kp + k] = bf16_lo(h);
            A[i * lda + k / 2] |= (uint32_t)h << (16 * (k & 1));
        }
    for (int k = 0; k < 2 * kp; k++)
        for (int j = 0; j < n; j++) {
            const uint16_t h = rand_bf16();
            b[k * n + j] = bf16_lo(h);
            /* VNNI: pair row k / 2 of column j, half k % 2 */
            B[(j / AMX_NR) * ps + (k / 2) * AMX_NR + j % AMX_NR] |= (uint32_t)h << (16 * (k & 1));
        }
    for (int i = 0; i < m * ldc; i++)
        C[i] = (float)(i % 7) - 3.0f;
    float *C0 = malloc((size_t)m * ldc * 4);
    memcpy(C0, C, (size_t)m * ldc * 4);
    amx_gemm_bf16(m, n, kp, A, lda, B, ps, C, ldc, accumulate);
    int bad = 0;
    for (int i = 0; i < m && !bad; i++)
        for (int j = 0; j < ldc; j++) {
            if (j >= n) { /* past n: untouched */
                if (C[i * ldc + j] != C0[i * ldc + j])
                    bad = 1;
                continue;
            }
            double want = accumulate ? C0[i * ldc + j] : 0.0, mag = fabs(want);
            for (int k = 0; k < 2 * kp; k++) {
                want += a[i * 2 * kp + k] * b[k * n + j];
                mag += fabs(a[i * 2 * kp + k] * b[k * n + j]);
            }
            if (fabs(C[i * ldc + j] - want) > 1e-6 * mag + 1e-30) {
                fprintf(stderr, "m %d n %d kp %d acc %d: C[%d][%d] = %.9g, want %.9g\n", m, n, kp,
                        accumulate, i, j, C[i * ldc + j], want);
                bad = 1;
                break;
            }
        }
    free(A), free(B), free(C), free(C0), free(a), free(b);
    return bad;
}

int main(void)
{
    const int ms[] = {1, 15, 16, 17, 32, 48, 64, 100, 128};
    const int ns[] = {32, 64, 128};
    const int kps[] = {1, 15, 16, 31, 32, 64, 80};
    int fails = 0, cases = 0;
    for (size_t x = 0; x < sizeof ms / sizeof *ms; x++)
        for (size_t y = 0; y < sizeof ns / sizeof *ns; y++)
            for (size_t z = 0; z < sizeof kps / sizeof *kps; z++)
                for (int acc = 0; acc < 2; acc++) {
                    fails += check(ms[x], ns[y], kps[z], acc);
                    cases++;
                }
    /* The tiles must have done the bulk: m 128, n 128, kp 64 is 8 x 8 x 4
     * tile products (a 2 x 2 block per 4 loads). */
    dp_count = 0;
    fails += check(128, 128, 64, 1);
    if (dp_count != 8 * 8 * 4) {
        fprintf(stderr, "tile products %d, want %d\n", dp_count, 8 * 8 * 4);
        fails++;
    }
    printf("amx layout: %d cases, %d failed (tile configs %d, edge calls %d)\n", cases + 1, fails,
           tiles_configured, edge_count);
    return fails != 0;
}
