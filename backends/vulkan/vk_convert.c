/* Vulkan backend: bf16 (and, on request, f32) attention inputs through f16
 * copies (shaders/to_f16.comp), recorded in the attention stage's frame
 * before the attention dispatch. The matrix kernels multiply f16 with f32
 * accumulation: bf16 values convert exactly while inside f16's normal range
 * (|x| in [2^-14, 65504]), so logits are as exact as bf16 x bf16 products
 * and P is rounded to f16 (finer than bf16). f32 inputs lose precision in the
 * conversion, beyond the f32 contract: only with STEM_VULKAN_F32_MATRIX=1. */
#include "vk_internal.h"

#include <string.h>

int vk_convert_dtype(const stem_vk_context *c, stem_dtype dtype)
{
    return dtype == STEM_DTYPE_BF16 || (dtype == STEM_DTYPE_F32 && c->tune.f32_matrix);
}

stem_status vk_convert_prepare(stem_vk_context *c, const stem_tensor *const qkv[3],
                               vk_convert_job *j, vk_bind *binds, vk_params *p)
{
    memset(j, 0, sizeof *j);
    const uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)qkv[0]->dtype, 0, 0, 0, 0, 0};
    stem_status st = vk_pipeline(c, VKK_TO_F16, spec, &j->pipe);
    for (int t = 0; st == STEM_OK && t < 3; t++) {
        const stem_tensor *x = qkv[t];
        const uint64_t B = (uint64_t)x->dims[0], H = (uint64_t)x->dims[1],
                       R = (uint64_t)x->dims[2], D = (uint64_t)x->dims[3];
        const uint64_t elems = B * H * R * D;
        if (elems / 2 >= 0xffffffffu)
            return stem_set_error(STEM_ERR_UNSUPPORTED,
                                  "vulkan: %llu elements are too many for the f16 copy",
                                  (unsigned long long)elems);
        st = vk_scratch(c, VKS_Q16 + t, elems * 2);
        if (st != STEM_OK)
            break;
        vk_params *cp = &j->p[t];
        memset(j->binds[t], 0, sizeof j->binds[t]);
        st = vk_bind_tensor(c, x, VKB_Q, j->binds[t], cp);
        vk_bind_mem(&c->scratch[VKS_Q16 + t], VKB_QFLAT, j->binds[t]);
        cp->batch = (uint32_t)B;
        cp->heads = (uint32_t)H;
        cp->n_keys = (uint32_t)R;
        cp->head_dim = (uint32_t)D;
        cp->items = (uint32_t)(elems / 2);
        j->items[t] = (elems / 2 + 63) / 64;
        /* The attention reads the copy: contiguous [B][H][R][D] f16. */
        vk_bind_mem(&c->scratch[VKS_Q16 + t], VKB_Q + t, binds);
        p->off[t] = 0;
        p->str[t][0] = (uint32_t)(H * R * D);
        p->str[t][1] = (uint32_t)(R * D);
        p->str[t][2] = (uint32_t)D;
        p->str[t][3] = 1;
    }
    if (st != STEM_OK)
        return st;
    j->n = 3;
    return STEM_OK;
}

stem_status vk_convert_record(stem_vk_context *c, const vk_convert_job *j)
{
    stem_status st = STEM_OK;
    for (int t = 0; st == STEM_OK && t < j->n; t++)
        st = vk_dispatch(c, j->pipe, j->binds[t], &j->p[t], j->items[t]);
    return st;
}
