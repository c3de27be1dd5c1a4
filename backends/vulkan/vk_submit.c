/* Vulkan backend: frames, recording and submission.
 * A frame is one command buffer with its descriptor sets and params. Stages
 * take the next frame of a small ring, record, submit and return; a frame is
 * waited for only when the ring comes round to it again, in stem_synchronize,
 * or where the host must touch memory the device may still use. */
#include "vk_internal.h"

#include <string.h>

static stem_status frame_create(stem_vk_context *c, vk_frame *fr)
{
    VkCommandPoolCreateInfo cp = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    cp.queueFamilyIndex = c->queue_family;
    cp.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
    VkResult r = c->f.vkCreateCommandPool(c->device, &cp, NULL, &fr->pool);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ca = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ca.commandPool = fr->pool;
    ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ca.commandBufferCount = 1;
    r = c->f.vkAllocateCommandBuffers(c->device, &ca, &fr->cmd);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = c->f.vkCreateFence(c->device, &fi, NULL, &fr->fence);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreateFence");
    VkDescriptorPoolSize ps[2] = {
        {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, VK_MAX_DISPATCH * (VKB_COUNT_ - 1)},
        {VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER, VK_MAX_DISPATCH}};
    VkDescriptorPoolCreateInfo dp = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    dp.maxSets = VK_MAX_DISPATCH;
    dp.poolSizeCount = 2;
    dp.pPoolSizes = ps;
    r = c->f.vkCreateDescriptorPool(c->device, &dp, NULL, &fr->desc_pool);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreateDescriptorPool");
    return vk_mem_create(c, (VkDeviceSize)VK_MAX_DISPATCH * VK_PARAM_SLOT, 1,
                         VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT, &fr->params);
}

stem_status vk_frames_create(stem_vk_context *c)
{
    if (c->props.limits.minUniformBufferOffsetAlignment > VK_PARAM_SLOT)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "vulkan: minUniformBufferOffsetAlignment %llu > %d",
                              (unsigned long long)c->props.limits.minUniformBufferOffsetAlignment,
                              VK_PARAM_SLOT);
    for (int i = 0; i < VK_FRAMES; i++) {
        stem_status st = frame_create(c, &c->frames[i]);
        if (st != STEM_OK)
            return st;
    }
    return STEM_OK;
}

void vk_frames_destroy(stem_vk_context *c)
{
    vk_wait_all(c);
    for (int i = 0; i < VK_FRAMES; i++) {
        vk_frame *fr = &c->frames[i];
        vk_mem_destroy(c, &fr->params);
        if (fr->desc_pool)
            c->f.vkDestroyDescriptorPool(c->device, fr->desc_pool, NULL);
        if (fr->fence)
            c->f.vkDestroyFence(c->device, fr->fence, NULL);
        if (fr->pool)
            c->f.vkDestroyCommandPool(c->device, fr->pool, NULL); /* frees cmd too */
        memset(fr, 0, sizeof *fr);
    }
}

static stem_status frame_wait(stem_vk_context *c, vk_frame *fr)
{
    if (!fr->pending)
        return STEM_OK;
    VkResult r = c->f.vkWaitForFences(c->device, 1, &fr->fence, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkWaitForFences");
    fr->pending = 0;
    r = c->f.vkResetFences(c->device, 1, &fr->fence);
    return r == VK_SUCCESS ? STEM_OK : vk_error(r, "vkResetFences");
}

stem_status vk_wait_all(stem_vk_context *c)
{
    stem_status first = STEM_OK;
    /* Oldest first: the ring's next frame was submitted longest ago. */
    for (int i = 0; i < VK_FRAMES; i++) {
        const stem_status st = frame_wait(c, &c->frames[(c->next_frame + i) % VK_FRAMES]);
        if (first == STEM_OK)
            first = st;
    }
    return first;
}

/* Everything earlier on the queue (stages, copies, fills, the caller's work
 * on a shared queue) before everything after: one full memory barrier.
 * (Host writes are made visible by vkQueueSubmit itself.) */
static void barrier_all(stem_vk_context *c, VkCommandBuffer cmd, VkPipelineStageFlags dst,
                        VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = dst_access;
    c->f.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, dst, 0, 1, &mb, 0, NULL, 0,
                              NULL);
}

#define DEVICE_ACCESS                                                                          \
    (VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |    \
     VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_UNIFORM_READ_BIT)

stem_status vk_begin(stem_vk_context *c)
{
    if (c->rec)
        return stem_set_error(STEM_ERR_INTERNAL, "vulkan: a frame is already being recorded");
    vk_frame *fr = &c->frames[c->next_frame];
    stem_status st = frame_wait(c, fr);
    if (st != STEM_OK)
        return st;
    VkResult r = c->f.vkResetCommandPool(c->device, fr->pool, 0);
    if (r == VK_SUCCESS)
        r = c->f.vkResetDescriptorPool(c->device, fr->desc_pool, 0);
    if (r != VK_SUCCESS)
        return vk_error(r, "command pool reset");
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    r = c->f.vkBeginCommandBuffer(fr->cmd, &bi);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkBeginCommandBuffer");
    barrier_all(c, fr->cmd,
                VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                DEVICE_ACCESS);
    c->n_dispatch = 0;
    c->rec = fr;
    return STEM_OK;
}

void vk_abort(stem_vk_context *c)
{
    if (c->rec) {
        c->f.vkEndCommandBuffer(c->rec->cmd);
        c->rec = NULL;
    }
}

stem_status vk_submit(stem_vk_context *c, int wait)
{
    vk_frame *fr = c->rec;
    if (!fr)
        return stem_set_error(STEM_ERR_INTERNAL, "vulkan: submit without a recorded frame");
    c->rec = NULL;
    /* The device's writes visible to the host (mapped memory) and to later work. */
    barrier_all(c, fr->cmd, VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                DEVICE_ACCESS | VK_ACCESS_HOST_READ_BIT);
    VkResult r = c->f.vkEndCommandBuffer(fr->cmd);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &fr->cmd;
    r = c->f.vkQueueSubmit(c->queue, 1, &si, fr->fence);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkQueueSubmit");
    fr->pending = 1;
    c->next_frame = (c->next_frame + 1) % VK_FRAMES;
    return wait ? frame_wait(c, fr) : STEM_OK;
}
