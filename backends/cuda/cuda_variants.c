/* CUDA backend: the table of attention kernel variants, in order of
 * preference. Adding a variant = one kernel symbol in a .cu file and one row
 * here (its shared memory function and supports() predicate). */
#include "cuda_common.h"

#include <stdint.h>

/* Q / K / V rows the tensor-core kernels load with 16-byte copies: unit
 * element stride, 16-byte aligned base and strides. */
static int rows_16b_aligned(const stem_tensor *t)
{
    const uintptr_t base = (uintptr_t)t->buffer->impl + t->offset;
    return t->strides[3] == 1 && t->strides[2] % 8 == 0 && t->strides[1] % 8 == 0 &&
           t->strides[0] % 8 == 0 && base % 16 == 0;
}

static int mma_supports(const stem_cuda_context *c, const stem_tensor *q, const stem_tensor *k,
                        const stem_tensor *v)
{
    (void)c;
    return rows_16b_aligned(q) && rows_16b_aligned(k) && rows_16b_aligned(v);
}

/* The TMA path additionally needs the driver's tensor-map encoder and a
 * device of compute capability 9.0 (the module is an sm_90a image; the
 * module table already skips it elsewhere). Strides must also stay below
 * 2^40 bytes, which any real allocation does. */
static int sm90_supports(const stem_cuda_context *c, const stem_tensor *q, const stem_tensor *k,
                         const stem_tensor *v)
{
    return c->api->cuTensorMapEncodeTiled != NULL && c->cc_major == 9 && c->cc_minor == 0 &&
           mma_supports(c, q, k, v);
}

static int any_supports(const stem_cuda_context *c, const stem_tensor *q, const stem_tensor *k,
                        const stem_tensor *v)
{
    (void)c, (void)q, (void)k, (void)v;
    return 1;
}

/* mma.sync kernels (the STEM_ATTN_MMA rows of attention_mma.cu): a Q tile of
 * `block` rows and two (K, V) tiles of 64 keys (block 64) or 32 (block 128,
 * and head_dim 256 at either block), rows padded by 8 elements. At head_dim
 * 256 block 64 needs 99 KB, the opt-in limit of sm_86 / sm_89, block 128
 * 132 KB (sm_80, sm_90), on 8 warps instead of 4. */
static unsigned mma_b64_smem(int head_dim)
{
    const int keys = head_dim == 256 ? 32 : 64;
    return (unsigned)((64 + 4 * keys) * (head_dim + 8) * 2);
}
static unsigned mma_b128_smem(int head_dim) { return (unsigned)((128 + 4 * 32) * (head_dim + 8) * 2); }

/* Keys per K / V stage of the sm90 kernel (kv_rows() in attention_sm90.cu):
 * a 128-key block, or half of one at head_dim 256. */
int stem_cuda_sm90_kv_rows(int head_dim) { return head_dim == 256 ? 64 : 128; }

/* sm90 kernel (attention_sm90.cu, sm90_smem): a Q tile of 128 rows + STAGES
 * x (K, V) tiles of kv_rows rows, barriers, 1 KB alignment slack. STAGES: 3
 * at head_dim 64, else 2 (head_dim 256: 192 KB of tiles). */
static unsigned sm90_smem(int head_dim)
{
    const unsigned tile = 128u * (unsigned)head_dim * 2u, stages = head_dim == 64 ? 3u : 2u;
    const unsigned kv = (unsigned)stem_cuda_sm90_kv_rows(head_dim) * (unsigned)head_dim * 2u;
    return tile + 2u * stages * kv + 256u + 1024u;
}

/* The sm_90a kernels are the default on sm_90: they pass the whole CUDA
 * conformance suite on an H100 (bench/results/cuda.md; head_dim 256 on
 * half-block K / V tiles since calls 9 and 10, 2.7x the mma.sync kernel at
 * 32K). STEM_CUDA_ATTN=mma asks for the mma.sync kernels instead; 1 here
 * makes the sm90 rows opt-in again. */
#define SM90_OPT_IN 0
#define SM90(fam, ty, d)                                                                           \
    {"stem_k_attn_" #fam "_" #ty "_d" #d, #fam, STEM_CUDA_MOD_ATTN_SM90, ty, d, 128, 128, 384, 1,  \
     SM90_OPT_IN, sm90_smem, sm90_supports}
#define MMA(b, ty, d)                                                                              \
    {"stem_k_attn_mma_b" #b "_" #ty "_d" #d, "mma", STEM_CUDA_MOD_ATTN_MMA,                        \
     ty, d, b, b, (b) == 128 && (d) == 256 ? 256 : 128, 0, 0, mma_b##b##_smem, mma_supports}
/* the dtype tokens of the symbol names */
#define f16 STEM_DTYPE_F16
#define bf16 STEM_DTYPE_BF16

const stem_cuda_attn_variant stem_cuda_attn_variants[] = {
    /* sm90p: softmax overlapped with the GEMMs + ping-pong between the
     * consumer warpgroups (the fastest: 3-8% over sm90 on an H200, 8K-128K);
     * sm90: the overlap alone; sm90s: serial softmax (their baseline) */
    SM90(sm90p, bf16, 128), SM90(sm90p, bf16, 64), SM90(sm90p, f16, 128), SM90(sm90p, f16, 64),
    SM90(sm90p, bf16, 256), SM90(sm90p, f16, 256),
    SM90(sm90, bf16, 128), SM90(sm90, bf16, 64), SM90(sm90, f16, 128), SM90(sm90, f16, 64),
    SM90(sm90, bf16, 256), SM90(sm90, f16, 256),
    SM90(sm90s, bf16, 128), SM90(sm90s, bf16, 64), SM90(sm90s, f16, 128), SM90(sm90s, f16, 64),
    SM90(sm90s, bf16, 256), SM90(sm90s, f16, 256),
    MMA(128, bf16, 128), MMA(128, bf16, 64), MMA(128, f16, 128), MMA(128, f16, 64),
    MMA(64, bf16, 128), MMA(64, bf16, 64), MMA(64, f16, 128), MMA(64, f16, 64),
    MMA(128, bf16, 256), MMA(128, f16, 256), MMA(64, bf16, 256), MMA(64, f16, 256),
    /* Exact f32 on CUDA cores: every dtype, head_dim, block and layout. */
    {"stem_k_attn_generic", "generic", STEM_CUDA_MOD_ATTN_GENERIC, -1, 0, 0, 4, 128, 0, 0, NULL,
     any_supports},
};
const int stem_cuda_attn_variant_count =
    (int)(sizeof stem_cuda_attn_variants / sizeof stem_cuda_attn_variants[0]);

_Static_assert(sizeof stem_cuda_attn_variants / sizeof stem_cuda_attn_variants[0] <=
                   STEM_CUDA_ATTN_VARIANT_MAX,
               "raise STEM_CUDA_ATTN_VARIANT_MAX");
