/* Buffer-to-buffer copies (the core's paged K/V gather): one vkCmdCopyBuffer
 * with a region per contiguous run, queued like a stage.
 * Wrapped host memory (stem_buffer_wrap_host) is the truth of its buffer, so
 * a copy touching it goes through the host instead. */
#include "vk_internal.h"

#include <stdlib.h>
#include <string.h>

stem_status stem_vk_copy_rects(stem_context *ctx, stem_buffer *dst, const stem_buffer *src,
                               const stem_copy_rect *rects, size_t count)
{
    stem_vk_context *c = vk_ctx(ctx);
    vk_buffer *vs = (vk_buffer *)src->impl, *vd = (vk_buffer *)dst->impl;
    stem_status st = STEM_OK;
    if (vs->user_host || vd->user_host) {
        for (size_t i = 0; st == STEM_OK && i < count; ++i)
            for (size_t r = 0; st == STEM_OK && r < rects[i].rows; ++r) {
                const size_t so = rects[i].src_off + r * rects[i].src_pitch;
                const size_t dof = rects[i].dst_off + r * rects[i].dst_pitch;
                const size_t n = rects[i].row_bytes;
                if (vs->user_host && vd->user_host)
                    memcpy((char *)vd->user_host + dof, (const char *)vs->user_host + so, n);
                else if (vd->user_host)
                    st = vk_download(c, &vs->mem, vs->base + so, (char *)vd->user_host + dof, n);
                else
                    st = vk_upload(c, &vd->mem, vd->base + dof, (const char *)vs->user_host + so,
                                   n);
            }
        return st;
    }
    size_t total = 0;
    for (size_t i = 0; i < count; ++i)
        total += rects[i].rows;
    if (total == 0)
        return STEM_OK;
    VkBufferCopy *regions = malloc(total * sizeof *regions);
    if (!regions)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan copy: out of host memory");
    size_t k = 0;
    for (size_t i = 0; i < count; ++i)
        for (size_t r = 0; r < rects[i].rows; ++r, ++k) {
            regions[k].srcOffset = vs->base + rects[i].src_off + r * rects[i].src_pitch;
            regions[k].dstOffset = vd->base + rects[i].dst_off + r * rects[i].dst_pitch;
            regions[k].size = rects[i].row_bytes;
        }
    st = vk_begin(c); /* queued in order with the stages (each frame opens with a barrier) */
    if (st == STEM_OK) {
        c->f.vkCmdCopyBuffer(c->rec->cmd, vs->mem.buffer, vd->mem.buffer, (uint32_t)total,
                             regions);
        st = vk_submit(c, c->tune.sync_stages);
    }
    free(regions);
    return st;
}
