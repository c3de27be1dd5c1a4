/* Vulkan backend: device allocations, scratch, staging copies. */
#include "vk_internal.h"

#include <string.h>

stem_status vk_error(VkResult r, const char *what)
{
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
        return stem_set_error(STEM_ERR_DEVICE_OUT_OF_MEMORY, "vulkan: %s: %s", what,
                              stem_vk_result_name(r));
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan: %s: %s", what,
                              stem_vk_result_name(r));
    if (r == VK_ERROR_DEVICE_LOST)
        return stem_set_error(STEM_ERR_DEVICE_LOST, "vulkan: %s: %s", what,
                              stem_vk_result_name(r));
    return stem_set_error(STEM_ERR_BACKEND_API, "vulkan: %s failed: %s (%d)", what,
                          stem_vk_result_name(r), (int)r);
}

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
    vk_mem m;
    stem_status st = vk_mem_create(c, bytes + bytes / 4, c->host_buffers, STORAGE_USAGE, &m);
    if (st != STEM_OK)
        return st;
    vk_mem_destroy(c, &c->scratch[i]); /* stages are synchronous: nothing uses it now */
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
        c->f.vkCmdCopyBuffer(c->cmd, c->staging.buffer, m->buffer, 1, &region);
    else
        c->f.vkCmdCopyBuffer(c->cmd, m->buffer, c->staging.buffer, 1, &region);
    return vk_submit_wait(c);
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
    if (m->mapped) {
        memcpy((char *)m->mapped + offset, src, (size_t)bytes);
        return STEM_OK;
    }
    stem_status st = ensure_staging(c);
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
    if (m->mapped) {
        memcpy(dst, (const char *)m->mapped + offset, (size_t)bytes);
        return STEM_OK;
    }
    stem_status st = ensure_staging(c);
    for (VkDeviceSize done = 0; st == STEM_OK && done < bytes;) {
        const VkDeviceSize part = bytes - done < STAGING_BYTES ? bytes - done : STAGING_BYTES;
        st = staged_copy(c, m, offset + done, part, 0);
        if (st == STEM_OK)
            memcpy((char *)dst + done, c->staging.mapped, (size_t)part);
        done += part;
    }
    return st;
}
