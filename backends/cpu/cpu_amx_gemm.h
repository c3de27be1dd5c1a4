/*
 * CPU backend: the bf16 pair GEMM on AMX tiles, written against tile
 * macros so that the same loops run on the real tiles (cpu_kernels_amx.c)
 * and on a plain C model of them (tests/test_cpu_amx_layout.c, which checks
 * the layouts on any machine).
 *
 * The includer defines:
 *   AMX_NR                     panel width of Bp in pairs (32: two B tiles)
 *   TILE_ZERO(t)               tile t = 0
 *   TILE_LOAD(t, p, stride)    tile t = 16 rows of 64 bytes, rows stride bytes apart
 *   TILE_STORE(t, p, stride)   the reverse
 *   TILE_DP(c, a, b)           TDPBF16PS: c[i][j] += sum_p dot2(a[i][p], b[p][j])
 *   TILE_BEGIN() TILE_END()    load the configuration (amx_cfg) and
 *                              release the tiles, around each call's tile work
 *   AMX_EDGE(...)              gemm_bf16 for what the tiles do not cover
 *                              (same arguments as amx_gemm_bf16)
 * Every tile is 16 rows x 64 bytes: C 16 x 16 f32, A 16 rows x 16 pairs
 * (32 bf16 of the reduced dimension), B 16 pair rows x 16 columns, which is
 * exactly one 16-column half of a 32-wide panel of the packed layout
 * (Bp[p * 32 + j] = pair of rows 2p, 2p+1 of column j: the VNNI layout),
 * loaded with a stride of 128 bytes.
 * Tiles 0-3 hold a 32 x 32 block of C, 4-5 two A tiles, 6-7 two B tiles:
 * four TDPBF16PS per four loads.
 */
#include <stddef.h>
#include <stdint.h>

/* The tile configuration (palette 1): 64 bytes, as LDTILECFG reads it. */
typedef struct amx_tilecfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile t */
    uint8_t rows[16];   /* rows of tile t */
} amx_tilecfg;

_Static_assert(sizeof(amx_tilecfg) == 64, "LDTILECFG reads 64 bytes");

/* Tiles 0..7 as 16 rows x 64 bytes, the rest unused. */
static const amx_tilecfg amx_cfg = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

/* C (+)= A Bp over rows [0, m16) and pairs [0, k16) (m16, k16 multiples of
 * 16, n a multiple of AMX_NR): the tiles' part. The caller has loaded the
 * configuration. */
static inline void amx_tiles(int m16, int n, int k16, const uint32_t *A, ptrdiff_t lda,
                             const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                             int accumulate)
{
    const ptrdiff_t sa = lda * 4, sc = ldc * 4, sb = AMX_NR * 4;
    for (int j = 0; j + AMX_NR <= n; j += AMX_NR) {
        const uint32_t *b = Bp + (ptrdiff_t)(j / AMX_NR) * panel_stride;
        int i = 0;
        for (; i + 32 <= m16; i += 32) {
            float *c0 = C + (ptrdiff_t)i * ldc + j, *c1 = c0 + 16 * ldc;
            const uint32_t *a0 = A + (ptrdiff_t)i * lda, *a1 = a0 + 16 * lda;
            if (accumulate) {
                TILE_LOAD(0, c0, sc);
                TILE_LOAD(1, c0 + 16, sc);
                TILE_LOAD(2, c1, sc);
                TILE_LOAD(3, c1 + 16, sc);
            } else {
                TILE_ZERO(0);
                TILE_ZERO(1);
                TILE_ZERO(2);
                TILE_ZERO(3);
            }
            for (int p = 0; p < k16; p += 16) {
                TILE_LOAD(4, a0 + p, sa);
                TILE_LOAD(6, b + (ptrdiff_t)p * AMX_NR, sb);
                TILE_LOAD(7, b + (ptrdiff_t)p * AMX_NR + 16, sb);
                TILE_LOAD(5, a1 + p, sa);
                TILE_DP(0, 4, 6);
                TILE_DP(1, 4, 7);
                TILE_DP(2, 5, 6);
                TILE_DP(3, 5, 7);
            }
            TILE_STORE(0, c0, sc);
            TILE_STORE(1, c0 + 16, sc);
            TILE_STORE(2, c1, sc);
            TILE_STORE(3, c1 + 16, sc);
        }
        if (i < m16) { /* 16 rows left */
            float *c0 = C + (ptrdiff_t)i * ldc + j;
            const uint32_t *a0 = A + (ptrdiff_t)i * lda;
            if (accumulate) {
                TILE_LOAD(0, c0, sc);
                TILE_LOAD(1, c0 + 16, sc);
            } else {
                TILE_ZERO(0);
                TILE_ZERO(1);
            }
            for (int p = 0; p < k16; p += 16) {
                TILE_LOAD(4, a0 + p, sa);
                TILE_LOAD(6, b + (ptrdiff_t)p * AMX_NR, sb);
                TILE_LOAD(7, b + (ptrdiff_t)p * AMX_NR + 16, sb);
                TILE_DP(0, 4, 6);
                TILE_DP(1, 4, 7);
            }
            TILE_STORE(0, c0, sc);
            TILE_STORE(1, c0 + 16, sc);
        }
    }
}

/* The gemm_bf16 contract (cpu_kernels.h) with nr = AMX_NR: the tiles take
 * whole 16-row, 16-pair blocks; AMX_EDGE adds the remaining pairs to those
 * rows and computes the remaining rows. own_cfg: load the configuration for
 * this call and release the tiles after it (LDTILECFG costs far less than a
 * whole tile's product), so other AMX users in the process (and context
 * switches) see the initial state; 0 when the caller holds the tiles around
 * many small calls. */
static inline void amx_gemm_bf16_cfg(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                                     const uint32_t *Bp, ptrdiff_t panel_stride, float *C,
                                     ptrdiff_t ldc, int accumulate, int own_cfg)
{
    if (panel_stride <= 0)
        panel_stride = AMX_NR * (ptrdiff_t)kp;
    const int m16 = m & ~15, k16 = kp & ~15;
    const int tiles = m16 > 0 && k16 > 0;
    if (tiles) {
        if (own_cfg)
            TILE_BEGIN();
        amx_tiles(m16, n, k16, A, lda, Bp, panel_stride, C, ldc, accumulate);
        if (own_cfg)
            TILE_END();
    }
    if (m16 > 0 && k16 < kp)
        AMX_EDGE(m16, n, kp - k16, A + k16, lda, Bp + (ptrdiff_t)k16 * AMX_NR, panel_stride, C,
                 ldc, tiles ? 1 : accumulate);
    if (m16 < m)
        AMX_EDGE(m - m16, n, kp, A + (ptrdiff_t)m16 * lda, lda, Bp, panel_stride,
                 C + (ptrdiff_t)m16 * ldc, ldc, accumulate);
}

static inline void amx_gemm_bf16(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                                const uint32_t *Bp, ptrdiff_t panel_stride, float *C,
                                ptrdiff_t ldc, int accumulate)
{
    amx_gemm_bf16_cfg(m, n, kp, A, lda, Bp, panel_stride, C, ldc, accumulate, 1);
}
