/* Kernel parameter layouts shared by the host C code and the .cu kernels
 * (plain C, the same ABI on both sides). */
#ifndef STEM_CUDA_KERNEL_ABI_H
#define STEM_CUDA_KERNEL_ABI_H

/* A strided 4-D view: element (b,h,n,i) at ptr + (b*s[0] + h*s[1] + n*s[2] +
 * i*s[3]) * size(dtype). dtype as stem_dtype: 0 f32, 1 f16, 2 bf16, 3 i32. */
typedef struct stem_ktensor {
    unsigned long long ptr;
    long long s[4];
    int dtype;
    int pad_;
} stem_ktensor;

/* The attention problem, shared by the generic and tensor-core kernels. */
typedef struct stem_kattn {
    stem_ktensor q, k, v, index, count, out;
    long long n_tokens;  /* N */
    int n_blocks;        /* nq = nk */
    int block;           /* B */
    int hq, group;       /* query heads, Hq / Hkv */
    int head_dim;
    float scale_log2;    /* softmax scale * log2(e) */
    /* Chunked calls (q_len < kv_len): n_tokens is the visible key count L, the
     * queries are positions [q_offset, L) (query i at q_offset + i), rows of
     * index/count are absolute query blocks row0 + r. 0, 0 for a fresh prefill. */
    long long q_offset;
    int row0;
    int has_lse;          /* write lse: f32 [B, Hq, q_len, 1], natural log */
    stem_ktensor lse;
    /* Persistent sm90 kernels only (0 elsewhere): n_tiles query blocks x
     * bq = batch x Hq work items; sched: u32 work counter, zeroed before
     * each launch; head_major: items walk the query blocks of one head
     * before the next head (as the per-tile grid runs), else the heads of
     * one query block before the next block. */
    int n_tiles, bq;
    unsigned long long sched;
    int head_major;
} stem_kattn;

/* Block scores: phase sums, value bonus and the causal GEMM. */
typedef struct stem_kscore {
    stem_ktensor q, k, v, scores;
    unsigned long long qflat, kflat; /* f32 [B*Hq | B*Hkv][n][S*d] */
    unsigned long long gmax;         /* f64 [B*Hkv][n*G] */
    unsigned long long vb;           /* f32 [B*Hkv][n] */
    long long n_tokens;
    int batch;
    int n_blocks, block, stride, group; /* n, B, S, G */
    int hq, hkv, head_dim;
    int selector;       /* stem_selector */
    int with_bonus;
    float beta;
    float coef;         /* scale / (S * norm * G * G); XATTENTION: scale / (S * norm) * log2(e) */
    /* Chunked calls: n_tokens = L; query phase sums and score rows cover the
     * n_rows absolute blocks row0 .. over the query positions [q_offset, L). */
    long long q_offset;
    int row0, n_rows;
    /* Value statistics f32 [B, Hkv, 1, 2] (mean, sd): used instead of the
     * computed ones when has_vin, written when has_vout. */
    int has_vin, has_vout;
    stem_ktensor vin, vout;
    /* Split-K score GEMM (nsplit > 1): each CTA sums one 256-column segment
     * into partial f32 [nsplit][B*Hq][n_rows][n]; stem_k_score_reduce adds them. */
    int nsplit, pad_;
    unsigned long long partial;
    /* stem_k_score_prep: u32 [B*Hkv] counts of a head's finished value CTAs
     * (zero between launches). */
    unsigned long long vcount;
} stem_kscore;

/* Selection of one plan. */
typedef struct stem_kselect {
    stem_ktensor scores, index, count;
    unsigned long long budget; /* i32 [n] */
    int n_blocks, hq;
    int mode;                  /* 0 top-k, 1 every causal block, 2 XAttention threshold
                                  (blocks 0 and I forced), 3 XAttention official rule
                                  from key block 0 (diagonal forced) */
    int sink_blocks, local_blocks;
    float tau;
    int row0;                  /* row r of scores/index/count is the absolute block row0 + r */
    int n_rows;                /* rows of the call (the warp-per-row kernel's bound) */
} stem_kselect;

/* The paged K/V gather: up to STEM_KCOPY_RECTS rectangles per launch, each
 * `rows` rows of `row_units` units of `unit` bytes (16, 8, 4 or 1; offsets
 * and pitches in units). Passed by value (under the 4 KB parameter limit),
 * so a gather needs no device-side table and no allocation. */
#define STEM_KCOPY_RECTS 48
typedef struct stem_kcopy_rect {
    unsigned long long src_off, dst_off;
    unsigned long long rows, row_units;
    unsigned long long src_pitch, dst_pitch;
} stem_kcopy_rect;

typedef struct stem_kcopy {
    unsigned long long src, dst;
    int count;
    int unit;
    stem_kcopy_rect r[STEM_KCOPY_RECTS];
} stem_kcopy;

#endif /* STEM_CUDA_KERNEL_ABI_H */
