/* Vulkan backend: pipelines, descriptor sets, recording and submission.
 * Every stage records its dispatches into the context's one command buffer
 * and waits for them, so bindings, params and scratch are free again when
 * the stage returns. */
#include "vk_internal.h"

#include <string.h>

stem_status vk_pipeline(stem_vk_context *c, vk_kernel k, const uint32_t spec[VK_SPEC_COUNT],
                        VkPipeline *out)
{
    for (int i = 0; i < c->n_pipes; i++)
        if (c->pipes[i].kernel == k && memcmp(c->pipes[i].spec, spec, sizeof c->pipes[i].spec) == 0) {
            *out = c->pipes[i].pipeline;
            return STEM_OK;
        }
    if (c->n_pipes == VK_MAX_PIPES)
        return stem_set_error(STEM_ERR_INTERNAL, "vulkan: too many pipelines in one context");
    if (!c->modules[k]) {
        const vk_spirv sp = stem_vk_spirv(k);
        VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
        mi.codeSize = sp.bytes;
        mi.pCode = sp.code;
        VkResult r = c->f.vkCreateShaderModule(c->device, &mi, NULL, &c->modules[k]);
        if (r != VK_SUCCESS)
            return stem_set_error(STEM_ERR_KERNEL_BUILD, "vulkan: vkCreateShaderModule(%d): %s",
                                  (int)k, stem_vk_result_name(r));
    }
    VkSpecializationMapEntry map[VK_SPEC_COUNT];
    for (uint32_t i = 0; i < VK_SPEC_COUNT; i++)
        map[i] = (VkSpecializationMapEntry){i, i * 4u, 4};
    VkSpecializationInfo si = {VK_SPEC_COUNT, map, sizeof(uint32_t) * VK_SPEC_COUNT, spec};
    VkComputePipelineCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    pi.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pi.stage.module = c->modules[k];
    pi.stage.pName = "main";
    pi.stage.pSpecializationInfo = &si;
    pi.layout = c->pipe_layout;
    VkPipeline p;
    VkResult r = c->f.vkCreateComputePipelines(c->device, c->pipe_cache, 1, &pi, NULL, &p);
    if (r != VK_SUCCESS)
        return stem_set_error(STEM_ERR_KERNEL_BUILD, "vulkan: vkCreateComputePipelines(%d): %s",
                              (int)k, stem_vk_result_name(r));
    vk_pipe_entry *e = &c->pipes[c->n_pipes++];
    e->kernel = k;
    memcpy(e->spec, spec, sizeof e->spec);
    e->pipeline = p;
    *out = p;
    return STEM_OK;
}

stem_status vk_begin(stem_vk_context *c)
{
    VkResult r = c->f.vkResetCommandPool(c->device, c->cmd_pool, 0);
    if (r == VK_SUCCESS)
        r = c->f.vkResetDescriptorPool(c->device, c->desc_pool, 0);
    if (r != VK_SUCCESS)
        return vk_error(r, "command pool reset");
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    r = c->f.vkBeginCommandBuffer(c->cmd, &bi);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkBeginCommandBuffer");
    c->n_dispatch = 0;
    c->recording = 1;
    return STEM_OK;
}

void vk_abort(stem_vk_context *c)
{
    if (c->recording) {
        c->f.vkEndCommandBuffer(c->cmd);
        c->recording = 0;
    }
}

void vk_bind_mem(vk_mem *m, int binding, vk_bind *binds)
{
    binds[binding].buffer = m->buffer;
    binds[binding].offset = 0;
    binds[binding].range = m->size;
}

#define MAX_GROUPS_X 65535u

stem_status vk_dispatch(stem_vk_context *c, VkPipeline pipe, const vk_bind *binds,
                        const vk_params *p, uint64_t items)
{
    if (items == 0)
        return STEM_OK;
    if (c->n_dispatch == VK_MAX_DISPATCH)
        return stem_set_error(STEM_ERR_INTERNAL, "vulkan: too many dispatches in one stage");
    const uint64_t gy = (items + MAX_GROUPS_X - 1) / MAX_GROUPS_X;
    if (gy > c->props.limits.maxComputeWorkGroupCount[1])
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "vulkan: %llu workgroups in one dispatch is more than this device "
                              "allows",
                              (unsigned long long)items);
    const uint32_t slot = (uint32_t)c->n_dispatch++;
    memcpy((char *)c->params.mapped + (size_t)slot * VK_PARAM_SLOT, p, sizeof *p);

    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = c->desc_pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &c->set_layout;
    VkDescriptorSet set;
    VkResult r = c->f.vkAllocateDescriptorSets(c->device, &ai, &set);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo info[VKB_COUNT_];
    VkWriteDescriptorSet w[VKB_COUNT_];
    for (int i = 0; i < VKB_COUNT_; i++) {
        if (i == VKB_PARAMS) {
            info[i] = (VkDescriptorBufferInfo){c->params.buffer, (VkDeviceSize)slot * VK_PARAM_SLOT,
                                               sizeof(vk_params)};
        } else if (binds[i].buffer) {
            info[i] = (VkDescriptorBufferInfo){binds[i].buffer, binds[i].offset, binds[i].range};
        } else {
            info[i] = (VkDescriptorBufferInfo){c->dummy.buffer, 0, VK_WHOLE_SIZE};
        }
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
        w[i].dstSet = set;
        w[i].dstBinding = (uint32_t)i;
        w[i].descriptorCount = 1;
        w[i].descriptorType = i == VKB_PARAMS ? VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER
                                              : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        w[i].pBufferInfo = &info[i];
    }
    c->f.vkUpdateDescriptorSets(c->device, VKB_COUNT_, w, 0, NULL);
    c->f.vkCmdBindPipeline(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    c->f.vkCmdBindDescriptorSets(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->pipe_layout, 0, 1,
                                 &set, 0, NULL);
    const uint32_t gx = items < MAX_GROUPS_X ? (uint32_t)items : MAX_GROUPS_X;
    c->f.vkCmdDispatch(c->cmd, gx, (uint32_t)gy, 1);
    /* The next dispatch reads what this one wrote. */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    c->f.vkCmdPipelineBarrier(c->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    return STEM_OK;
}

stem_status vk_submit_wait(stem_vk_context *c)
{
    c->recording = 0;
    VkResult r = c->f.vkEndCommandBuffer(c->cmd);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &c->cmd;
    r = c->f.vkQueueSubmit(c->queue, 1, &si, c->fence);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkQueueSubmit");
    r = c->f.vkWaitForFences(c->device, 1, &c->fence, VK_TRUE, UINT64_MAX);
    VkResult r2 = c->f.vkResetFences(c->device, 1, &c->fence);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkWaitForFences");
    if (r2 != VK_SUCCESS)
        return vk_error(r2, "vkResetFences");
    return STEM_OK;
}

/* ------------------------------------------------------------- tensors */

stem_status vk_bind_tensor(stem_vk_context *c, const stem_tensor *t, int slot, vk_bind *binds,
                           vk_params *p)
{
    const vk_buffer *vb = (const vk_buffer *)t->buffer->impl;
    const uint64_t es = stem_dtype_size(t->dtype);
    uint64_t last = 0; /* largest element offset */
    for (int i = 0; i < 4; i++)
        last += (uint64_t)t->strides[i] * (uint64_t)(t->dims[i] - 1);
    const uint64_t align = c->props.limits.minStorageBufferOffsetAlignment > 4
                               ? c->props.limits.minStorageBufferOffsetAlignment
                               : 4;
    const uint64_t at = (uint64_t)vb->base + (uint64_t)t->offset; /* in vb->mem.buffer */
    const uint64_t start = at / align * align;
    uint64_t end = at + (last + 1) * es;
    end = (end + 3) & ~(uint64_t)3; /* whole words; buffers are padded to 16 bytes */
    const uint64_t range = end - start;
    if (range > c->props.limits.maxStorageBufferRange)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "vulkan: a tensor spans %llu bytes, more than this device's "
                              "maxStorageBufferRange %u",
                              (unsigned long long)range, c->props.limits.maxStorageBufferRange);
    binds[slot].buffer = vb->mem.buffer;
    binds[slot].offset = start;
    binds[slot].range = range;
    /* Element offset and strides fit 32 bits: every element lies inside the range. */
    p->off[slot] = (uint32_t)((at - start) / es);
    for (int i = 0; i < 4; i++)
        p->str[slot][i] = t->dims[i] > 1 ? (uint32_t)t->strides[i] : 0u;
    return STEM_OK;
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

void vk_params_plan(const stem_plan *plan, const stem_pass *pass, vk_params *p)
{
    const stem_attention_desc *d = &plan->desc;
    const stem_config *cfg = &plan->cfg;
    p->dims0[0] = (uint32_t)pass->batch;
    p->dims0[1] = (uint32_t)pass->num_q_heads;
    p->dims0[2] = (uint32_t)pass->num_kv_heads;
    p->dims0[3] = (uint32_t)pass->kv_len; /* N: visible keys (queries end there too) */
    p->dims1[0] = (uint32_t)d->head_dim;
    p->dims1[1] = (uint32_t)cfg->block_size;
    p->dims1[2] = (uint32_t)cfg->stride;
    p->dims1[3] = (uint32_t)plan->group;
    p->dims2[0] = (uint32_t)plan->n_blocks;
    p->dims2[3] = (uint32_t)(pass->num_q_heads / pass->num_kv_heads);
    p->dims3[0] = (uint32_t)cfg->selector;
    p->dims3[1] = (uint32_t)(cfg->sink_blocks > 0 ? cfg->sink_blocks : 0);
    p->dims3[2] = (uint32_t)(cfg->local_blocks > 0 ? cfg->local_blocks : 0);
    p->dims3[3] = plan->dense ? VKF_DENSE : 0u;
    if (stem_xattn_diag_only(plan))
        p->dims3[3] |= VKF_XATTN_DIAG;
    p->f0[0] = plan->scale;
    p->f0[1] = (float)((double)plan->scale /
                       ((double)cfg->stride * cfg->norm * plan->group * plan->group));
    p->f0[2] = cfg->beta;
    p->f1[0] = cfg->xattn_threshold;
    p->geom[0] = (uint32_t)pass->q_offset;
    p->geom[1] = (uint32_t)pass->row0;
    p->geom[2] = (uint32_t)pass->n_rows;
}
