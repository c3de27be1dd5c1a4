/* Vulkan backend: device allocations, scratch, staging copies, wrapped host
 * memory mirrored around stages. */
#include "vk_internal.h"

#include <string.h>

static int find_memory_type_not(const stem_vk_context *c, uint32_t bits,
                                VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid)
{
    for (uint32_t i = 0; i < c->memprops.memoryTypeCount; i++) {
        const VkMemoryPropertyFlags f = c->memprops.memoryTypes[i].propertyFlags;
        if ((bits & (1u << i)) && (f & want) == want && (f & avoid) == 0)
            return (int)i;
    }
    return -1;
}

static int find_memory_type(const stem_vk_context *c, uint32_t bits, VkMemoryPropertyFlags want)
{
    return find_memory_type_not(c, bits, want, 0);
}

stem_status vk_mem_create(stem_vk_context *c, VkDeviceSize bytes, int host_visible,
                          VkBufferUsageFlags usage, vk_mem *out)
{
    memset(out, 0, sizeof *out);
    /* Whole 16-byte units, so 16-bit tensors can be read as 32-bit words. */
    const VkDeviceSize size = ((bytes ? bytes : 1) + 15) & ~(VkDeviceSize)15;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.size = size;
    bi.usage = usage;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkResult r = c->f.vkCreateBuffer(c->device, &bi, NULL, &out->buffer);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreateBuffer");
    VkMemoryRequirements req;
    c->f.vkGetBufferMemoryRequirements(c->device, out->buffer, &req);
    const VkMemoryPropertyFlags hv =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    /* Device buffers: plain device-local memory first (BAR-mapped memory is slow to read). */
    int type = host_visible ? find_memory_type(c, req.memoryTypeBits, hv)
                            : find_memory_type_not(c, req.memoryTypeBits,
                                                   VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                                   VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
    if (type < 0 && !host_visible)
        type = find_memory_type(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type < 0)
        type = find_memory_type(c, req.memoryTypeBits, host_visible ? hv : 0);
    if (type < 0) {
        c->f.vkDestroyBuffer(c->device, out->buffer, NULL);
        out->buffer = VK_NULL_HANDLE;
        return stem_set_error(STEM_ERR_BACKEND_API, "vulkan: no memory type for a buffer");
    }
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = (uint32_t)type;
    r = c->f.vkAllocateMemory(c->device, &ai, NULL, &out->memory);
    if (r == VK_SUCCESS)
        r = c->f.vkBindBufferMemory(c->device, out->buffer, out->memory, 0);
    const int mappable = (c->memprops.memoryTypes[type].propertyFlags & hv) == hv;
    if (r == VK_SUCCESS && mappable)
        r = c->f.vkMapMemory(c->device, out->memory, 0, VK_WHOLE_SIZE, 0, &out->mapped);
    if (r != VK_SUCCESS) {
        vk_mem_destroy(c, out);
        return vk_error(r, "device memory allocation");
    }
    out->size = size;
    return STEM_OK;
}

void vk_mem_destroy(stem_vk_context *c, vk_mem *m)
{
    if (m->buffer)
        c->f.vkDestroyBuffer(c->device, m->buffer, NULL);
    if (m->memory)
        c->f.vkFreeMemory(c->device, m->memory, NULL); /* unmaps too */
    memset(m, 0, sizeof *m);
}

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

