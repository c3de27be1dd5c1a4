/* Vulkan backend: scratch buffers, staging copies and wrapped host memory
 * mirrored around stages; above vk_submit.c, since each waits for queued
 * work or submits a copy. */
#include "vk_internal.h"

#include <string.h>

#define STORAGE_USAGE                                                                          \
    (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |                   \
     VK_BUFFER_USAGE_TRANSFER_DST_BIT)

stem_status vk_scratch(stem_vk_context *c, int i, VkDeviceSize bytes)
{
    if (c->scratch[i].buffer && c->scratch[i].size >= bytes)
        return STEM_OK;
    /* Queued stages may still use the old one: growing waits for them (rare). */
    stem_status st = c->scratch[i].buffer ? vk_wait_all(c) : STEM_OK;
    if (st != STEM_OK)
        return st;
    vk_mem_destroy(c, &c->scratch[i]);
    vk_mem m;
    st = vk_mem_create(c, bytes + bytes / 4, c->host_buffers, STORAGE_USAGE, &m);
    if (st != STEM_OK)
        return st;
    c->scratch[i] = m;
    return STEM_OK;
}

#define STAGING_BYTES ((VkDeviceSize)32 << 20)

/* One copy between the staging buffer and m, submitted and waited for. */
static stem_status staged_copy(stem_vk_context *c, vk_mem *m, VkDeviceSize offset,
                               VkDeviceSize bytes, int to_device)
{
    stem_status st = vk_begin(c);
    if (st != STEM_OK)
        return st;
    VkBufferCopy region = {to_device ? 0 : offset, to_device ? offset : 0, bytes};
    if (to_device)
        c->f.vkCmdCopyBuffer(c->rec->cmd, c->staging.buffer, m->buffer, 1, &region);
    else
        c->f.vkCmdCopyBuffer(c->rec->cmd, m->buffer, c->staging.buffer, 1, &region);
    return vk_submit(c, 1);
}

static stem_status ensure_staging(stem_vk_context *c)
{
    if (c->staging.buffer)
        return STEM_OK;
    return vk_mem_create(c, STAGING_BYTES, 1,
                         VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                         &c->staging);
}

stem_status vk_upload(stem_vk_context *c, vk_mem *m, VkDeviceSize offset, const void *src,
                      VkDeviceSize bytes)
{
    if (bytes == 0)
        return STEM_OK;
    /* Queued stages may read or write this memory (or the staging buffer). */
    stem_status st = vk_wait_all(c);
    if (st != STEM_OK)
        return st;
    if (m->mapped) {
        memcpy((char *)m->mapped + offset, src, (size_t)bytes);
        return STEM_OK;
    }
    st = ensure_staging(c);
    for (VkDeviceSize done = 0; st == STEM_OK && done < bytes;) {
        const VkDeviceSize part = bytes - done < STAGING_BYTES ? bytes - done : STAGING_BYTES;
        memcpy(c->staging.mapped, (const char *)src + done, (size_t)part);
        st = staged_copy(c, m, offset + done, part, 1);
        done += part;
    }
    return st;
}

stem_status vk_download(stem_vk_context *c, vk_mem *m, VkDeviceSize offset, void *dst,
                        VkDeviceSize bytes)
{
    if (bytes == 0)
        return STEM_OK;
    /* Queued stages may read or write this memory (or the staging buffer). */
    stem_status st = vk_wait_all(c);
    if (st != STEM_OK)
        return st;
    if (m->mapped) {
        memcpy(dst, (const char *)m->mapped + offset, (size_t)bytes);
        return STEM_OK;
    }
    st = ensure_staging(c);
    for (VkDeviceSize done = 0; st == STEM_OK && done < bytes;) {
        const VkDeviceSize part = bytes - done < STAGING_BYTES ? bytes - done : STAGING_BYTES;
        st = staged_copy(c, m, offset + done, part, 0);
        if (st == STEM_OK)
            memcpy((char *)dst + done, c->staging.mapped, (size_t)part);
        done += part;
    }
    return st;
}

/* ------------------------------------------------------- wrapped memory */

int vk_any_wrapped(const stem_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++)
        if (ts[i] && ((const vk_buffer *)ts[i]->buffer->impl)->user_host)
            return 1;
    return 0;
}

stem_status vk_sync_wrapped_in(stem_vk_context *c, const stem_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++) {
        if (!ts[i])
            continue;
        vk_buffer *vb = (vk_buffer *)ts[i]->buffer->impl;
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= ts[j] && ts[j]->buffer == ts[i]->buffer;
        if (vb->user_host && !seen) {
            stem_status st = vk_upload(c, &vb->mem, 0, vb->user_host, ts[i]->buffer->size);
            if (st != STEM_OK)
                return st;
        }
    }
    return STEM_OK;
}

stem_status vk_sync_wrapped_out(stem_vk_context *c, const stem_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++) {
        if (!ts[i])
            continue;
        vk_buffer *vb = (vk_buffer *)ts[i]->buffer->impl;
        if (!vb->user_host)
            continue;
        /* Only the tensor's byte span changes; copy exactly that back. */
        const stem_tensor *t = ts[i];
        uint64_t last = 0;
        for (int k = 0; k < 4; k++)
            last += (uint64_t)t->strides[k] * (uint64_t)(t->dims[k] - 1);
        const uint64_t bytes = (last + 1) * stem_dtype_size(t->dtype);
        stem_status st = vk_download(c, &vb->mem, t->offset, (char *)vb->user_host + t->offset,
                                     bytes);
        if (st != STEM_OK)
            return st;
    }
    return STEM_OK;
}

