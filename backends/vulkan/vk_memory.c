/* Vulkan backend: device allocations (the bottom layer: memory types,
 * buffers, mappings) and the error mapping every layer uses. */
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
