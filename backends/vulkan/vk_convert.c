/* Vulkan backend: attention inputs through f16 copies (shaders/to_f16.comp),
 * recorded in the attention stage's frame before the attention dispatch.
 * The matrix kernels multiply f16 with f32 accumulation.
 *  - f16 (STEM_VULKAN_F16_COPY=1 only): a bit-exact contiguous copy.
 *  - bf16: one copy per tensor. bf16 values convert exactly while inside
 *    f16's normal range (|x| in [2^-14, 65504]), so logits are as exact as
 *    bf16 x bf16 products and P is rounded to f16 (finer than bf16).
 *  - f32 (STEM_VULKAN_F32_MATRIX=1): two copies per tensor, hi = f16(x 2^e)
 *    and lo = f16(x 2^e - hi), e per tensor from its largest |x|
 *    (shaders/absmax.comp) so that the copies use f16's range; the split
 *    kernels take three products each for S and for O (about 22 bits).
 *    STEM_VULKAN_CONVERT=split rebuilds f32 from the copies for the plain
 *    kernels (shaders/split_check.comp), so the suite checks them anywhere. */
#include "vk_internal.h"

#include <string.h>

int vk_convert_dtype(const stem_vk_context *c, stem_dtype dtype)
{
    /* bf16 through f16 copies is exact inside f16's normal range (inf above
     * 65504, fewer bits below 2^-14) and 36-46x the plain kernels on an H100
     * (bench/results/vulkan.md): the default wherever a matrix path takes it;
     * STEM_VULKAN_BF16_COPY=0 keeps bf16 on the plain kernels. */
    /* f16 (STEM_VULKAN_F16_COPY=1): a copy the same kernel reads where it
     * would read the caller's buffers; for an A/B of the two on a device,
     * and it takes f16 tensors with unaligned rows onto the matrix path. */
    return (dtype == STEM_DTYPE_BF16 && (c->tune.bf16_copy || c->convert == 1)) ||
           (dtype == STEM_DTYPE_F16 && c->tune.f16_copy) ||
           (dtype == STEM_DTYPE_F32 && c->tune.f32_matrix);
}

stem_status vk_convert_prepare(stem_vk_context *c, const stem_tensor *const qkv[3], int split,
                               int check, vk_convert_job *j, vk_bind *binds, vk_params *p)
{
    memset(j, 0, sizeof *j);
    j->split = split;
    j->check = split && check;
    const uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)qkv[0]->dtype, split ? 1u : 0u, 0, 0, 0, 0};
    stem_status st = vk_pipeline(c, VKK_TO_F16, spec, &j->pipe);
    if (st == STEM_OK && split)
        st = vk_pipeline(c, VKK_ABSMAX, spec, &j->absmax);
    if (st == STEM_OK && split)
        st = vk_scratch(c, VKS_ABSMAX, 16);
    if (st == STEM_OK && j->check)
        st = vk_pipeline(c, VKK_SPLIT_CHECK, spec, &j->rebuild);
    for (int t = 0; st == STEM_OK && t < 3; t++) {
        const stem_tensor *x = qkv[t];
        const uint64_t B = (uint64_t)x->dims[0], H = (uint64_t)x->dims[1],
                       R = (uint64_t)x->dims[2], D = (uint64_t)x->dims[3];
        const uint64_t elems = B * H * R * D;
        if (elems >= 0xffffffffu)
            return stem_set_error(STEM_ERR_UNSUPPORTED,
                                  "vulkan: %llu elements are too many for the f16 copy",
                                  (unsigned long long)elems);
        st = vk_scratch(c, VKS_Q16 + t, elems * 2);
        if (st == STEM_OK && split)
            st = vk_scratch(c, VKS_Q16LO + t, elems * 2);
        if (st == STEM_OK && j->check)
            st = vk_scratch(c, VKS_Q32 + t, elems * 4);
        if (st != STEM_OK)
            break;
        vk_params *cp = &j->p[t];
        memset(j->binds[t], 0, sizeof j->binds[t]);
        st = vk_bind_tensor(c, x, VKB_Q, j->binds[t], cp);
        vk_bind_mem(&c->scratch[VKS_Q16 + t], VKB_QFLAT, j->binds[t]);
        if (split) {
            vk_bind_mem(&c->scratch[VKS_Q16LO + t], VKB_KFLAT, j->binds[t]);
            vk_bind_mem(&c->scratch[VKS_ABSMAX], VKB_VB, j->binds[t]);
        }
        if (j->check)
            vk_bind_mem(&c->scratch[VKS_Q32 + t], VKB_GMAX, j->binds[t]);
        cp->batch = (uint32_t)B;
        cp->heads = (uint32_t)H;
        cp->n_keys = (uint32_t)R;
        cp->head_dim = (uint32_t)D;
        cp->selector = (uint32_t)t; /* the tensor's absmax slot */
        j->items[t] = elems / 2;
        j->groups[t] = (elems + 4095) / 4096;
        /* The attention reads the copy: contiguous [B][H][R][D] f16; the lo
         * copies and the absmax slots ride in bindings 7-10. */
        vk_bind_mem(&c->scratch[(j->check ? VKS_Q32 : VKS_Q16) + t], VKB_Q + t, binds);
        if (split && !j->check)
            vk_bind_mem(&c->scratch[VKS_Q16LO + t], VKB_QFLAT + t, binds);
        p->off[t] = 0;
        p->str[t][0] = (uint32_t)(H * R * D);
        p->str[t][1] = (uint32_t)(R * D);
        p->str[t][2] = (uint32_t)D;
        p->str[t][3] = 1;
    }
    if (st != STEM_OK)
        return st;
    if (split)
        j->absmax_buf = c->scratch[VKS_ABSMAX].buffer;
    if (split && !j->check)
        vk_bind_mem(&c->scratch[VKS_ABSMAX], VKB_VB, binds);
    j->n = 3;
    return STEM_OK;
}

stem_status vk_convert_record(stem_vk_context *c, const vk_convert_job *j)
{
    stem_status st = STEM_OK;
    if (j->n && j->split) {
        /* absmax slots to 0, then the three maxima (atomicMax). */
        c->f.vkCmdFillBuffer(c->rec->cmd, j->absmax_buf, 0, 16, 0);
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER};
        mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
        mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
        c->f.vkCmdPipelineBarrier(c->rec->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                  VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0,
                                  NULL);
        for (int t = 0; st == STEM_OK && t < 3; t++) {
            vk_params ap = j->p[t];
            ap.items = (uint32_t)(j->items[t] * 2); /* elements */
            st = vk_dispatch(c, j->absmax, j->binds[t], &ap, j->groups[t]);
        }
    }
    for (int t = 0; st == STEM_OK && t < j->n; t++) {
        vk_params cp = j->p[t];
        cp.items = (uint32_t)j->items[t]; /* output words */
        st = vk_dispatch(c, j->pipe, j->binds[t], &cp, (j->items[t] + 63) / 64);
        if (st == STEM_OK && j->check)
            st = vk_dispatch(c, j->rebuild, j->binds[t], &cp, (j->items[t] + 63) / 64);
    }
    return st;
}
