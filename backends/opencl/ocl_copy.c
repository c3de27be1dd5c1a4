/* Buffer-to-buffer copies on the context's queue (the core's paged K/V
 * gather): one clEnqueueCopyBuffer per contiguous run, in queue order with
 * the stages, so the next sequence's gather waits for the previous one's
 * kernels on the in-order queue. */
#include "ocl_common.h"

stem_status stem_ocl_copy_rects(stem_context *ctx, stem_buffer *dst, const stem_buffer *src,
                                const stem_copy_rect *rects, size_t count)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    for (size_t i = 0; i < count; ++i)
        for (size_t r = 0; r < rects[i].rows; ++r) {
            const cl_int err = c->cl->clEnqueueCopyBuffer(
                c->queue, stem_ocl_mem(src), stem_ocl_mem(dst),
                rects[i].src_off + r * rects[i].src_pitch,
                rects[i].dst_off + r * rects[i].dst_pitch, rects[i].row_bytes, 0, NULL, NULL);
            if (err != CL_SUCCESS)
                return stem_ocl_fail(err, "clEnqueueCopyBuffer");
        }
    return STEM_OK;
}
