/* Vulkan backend: pipelines, descriptor sets, dispatches, the stage helper.
 * Descriptor sets and params live in the frame being recorded (vk_submit.c),
 * so they stay valid until its fence signals. */
#include "vk_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kernel names for the log, in enum vk_kernel order. */
static const char *const kernel_names[] = {
    "phase_sum", "vnorm", "vbonus", "score_gemm", "score_xattn", "select", "attention",
    "attention_rows", "attention_coop", "to_f16", "attention_coop_khr",
    "attention_coop_khr_bf16", "absmax", "attention_coop_split", "attention_coop_khr_split",
    "split_check"};
_Static_assert(sizeof kernel_names / sizeof kernel_names[0] == VKK_COUNT_,
               "kernel_names: one per vk_kernel");

/* STEM_VULKAN_PIPELINE_STATS=1: one log line (INFO) per executable of a new
 * pipeline with every statistic the driver reports (register count, spills,
 * scratch and shared memory on drivers that give them), so a run shows
 * whether a kernel spills. Silent where the extension is off. */
static void log_pipeline_stats(stem_vk_context *c, vk_kernel k,
                               const uint32_t spec[VK_SPEC_COUNT], VkPipeline p)
{
    if (!c->get_exec_props || !c->get_exec_stats)
        return;
    VkPipelineInfoKHR pinfo = {.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR};
    pinfo.pipeline = p;
    uint32_t ne = 0;
    if (c->get_exec_props(c->device, &pinfo, &ne, NULL) != VK_SUCCESS || ne == 0)
        return;
    VkPipelineExecutablePropertiesKHR props[4];
    if (ne > 4)
        ne = 4;
    for (uint32_t i = 0; i < ne; i++)
        props[i] = (VkPipelineExecutablePropertiesKHR){
            .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR};
    VkResult r = c->get_exec_props(c->device, &pinfo, &ne, props);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return;
    for (uint32_t e = 0; e < ne; e++) {
        VkPipelineExecutableInfoKHR ei = {.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR};
        ei.pipeline = p;
        ei.executableIndex = e;
        uint32_t ns = 0;
        if (c->get_exec_stats(c->device, &ei, &ns, NULL) != VK_SUCCESS)
            continue;
        VkPipelineExecutableStatisticKHR st[32];
        if (ns > 32)
            ns = 32;
        for (uint32_t i = 0; i < ns; i++)
            st[i] = (VkPipelineExecutableStatisticKHR){
                .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR};
        r = c->get_exec_stats(c->device, &ei, &ns, st);
        if (r != VK_SUCCESS && r != VK_INCOMPLETE)
            continue;
        char line[1000]; /* stem_log takes 1023 characters */
        size_t used = (size_t)snprintf(
            line, sizeof line,
            "vulkan: pipeline %s spec [%u %u %u %u %u %u %u] %s, subgroup %u:", kernel_names[k],
            spec[0], spec[1], spec[2], spec[3], spec[4], spec[5], spec[6], props[e].name,
            props[e].subgroupSize);
        for (uint32_t i = 0; i < ns && used < sizeof line; i++) {
            const char *sep = i ? "," : "";
            int w = 0;
            switch (st[i].format) {
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
                w = snprintf(line + used, sizeof line - used, "%s %s=%s", sep, st[i].name,
                             st[i].value.b32 ? "true" : "false");
                break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
                w = snprintf(line + used, sizeof line - used, "%s %s=%" PRId64, sep, st[i].name,
                             st[i].value.i64);
                break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
                w = snprintf(line + used, sizeof line - used, "%s %s=%" PRIu64, sep, st[i].name,
                             st[i].value.u64);
                break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
                w = snprintf(line + used, sizeof line - used, "%s %s=%g", sep, st[i].name,
                             st[i].value.f64);
                break;
            default:
                break;
            }
            if (w < 0)
                break;
            used += (size_t)w;
        }
        stem_log(NULL, STEM_LOG_INFO, "%s", line);
    }
}

/* FNV-1a over the kernel and spec constants. */
static uint32_t pipe_hash(vk_kernel k, const uint32_t spec[VK_SPEC_COUNT])
{
    uint32_t h = 2166136261u ^ (uint32_t)k;
    for (int i = 0; i < VK_SPEC_COUNT; i++)
        for (int b = 0; b < 4; b++)
            h = (h ^ ((spec[i] >> (8 * b)) & 0xffu)) * 16777619u;
    return h;
}

static vk_pipe_entry *pipe_slot(vk_pipe_table *t, vk_kernel k, const uint32_t spec[VK_SPEC_COUNT])
{
    for (uint32_t i = pipe_hash(k, spec) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        vk_pipe_entry *e = &t->slots[i];
        if (!e->pipeline ||
            (e->kernel == k && memcmp(e->spec, spec, sizeof e->spec) == 0))
            return e;
    }
}

/* Room for one more entry: the table doubles at half load. */
static stem_status pipe_reserve(vk_pipe_table *t)
{
    if (t->slots && 2 * (t->used + 1) <= t->cap)
        return STEM_OK;
    const uint32_t cap = t->cap ? 2 * t->cap : 64;
    vk_pipe_table g = {calloc(cap, sizeof(vk_pipe_entry)), cap, t->used};
    if (!g.slots)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    for (uint32_t i = 0; i < t->cap; i++)
        if (t->slots[i].pipeline)
            *pipe_slot(&g, t->slots[i].kernel, t->slots[i].spec) = t->slots[i];
    free(t->slots);
    *t = g;
    return STEM_OK;
}

void vk_pipes_destroy(stem_vk_context *c)
{
    for (uint32_t i = 0; i < c->pipes.cap; i++)
        if (c->pipes.slots[i].pipeline)
            c->f.vkDestroyPipeline(c->device, c->pipes.slots[i].pipeline, NULL);
    free(c->pipes.slots);
    memset(&c->pipes, 0, sizeof c->pipes);
}

stem_status vk_pipeline(stem_vk_context *c, vk_kernel k, const uint32_t spec[VK_SPEC_COUNT],
                        VkPipeline *out)
{
    stem_status st = pipe_reserve(&c->pipes);
    if (st != STEM_OK)
        return st;
    vk_pipe_entry *e = pipe_slot(&c->pipes, k, spec);
    if (e->pipeline) {
        *out = e->pipeline;
        return STEM_OK;
    }
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
    /* The matrix kernels hard-wire 32 lanes: where subgroups default to
     * another width, ask for 32-wide full ones (vk_coop.c, sg32_control). */
    VkPipelineShaderStageRequiredSubgroupSizeCreateInfo sg = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
    if (c->coop_sg32 && vk_kernel_is_coop(k)) {
        sg.requiredSubgroupSize = 32;
        pi.stage.pNext = &sg;
        pi.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT;
    }
    pi.layout = c->pipe_layout;
    /* Statistics on: no pipeline cache, so every pipeline is compiled here and
     * reports them (a driver may keep none for a cached one). */
    if (c->get_exec_stats)
        pi.flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
    VkPipeline p;
    VkResult r = c->f.vkCreateComputePipelines(
        c->device, c->get_exec_stats ? VK_NULL_HANDLE : c->pipe_cache, 1, &pi, NULL, &p);
    if (r != VK_SUCCESS)
        return stem_set_error(STEM_ERR_KERNEL_BUILD, "vulkan: vkCreateComputePipelines(%d): %s",
                              (int)k, stem_vk_result_name(r));
    log_pipeline_stats(c, k, spec, p);
    c->pipes.used++;
    e->kernel = k;
    memcpy(e->spec, spec, sizeof e->spec);
    e->pipeline = p;
    *out = p;
    return STEM_OK;
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
    vk_frame *fr = c->rec;
    if (items == 0)
        return STEM_OK;
    if (!fr)
        return stem_set_error(STEM_ERR_INTERNAL, "vulkan: dispatch outside a frame");
    if (c->n_dispatch == VK_MAX_DISPATCH)
        return stem_set_error(STEM_ERR_INTERNAL, "vulkan: too many dispatches in one stage");
    const uint64_t gy = (items + MAX_GROUPS_X - 1) / MAX_GROUPS_X;
    if (gy > c->props.limits.maxComputeWorkGroupCount[1])
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "vulkan: %llu workgroups in one dispatch is more than this device "
                              "allows",
                              (unsigned long long)items);
    const uint32_t slot = (uint32_t)c->n_dispatch++;
    memcpy((char *)fr->params.mapped + (size_t)slot * VK_PARAM_SLOT, p, sizeof *p);

    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = fr->desc_pool;
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
            info[i] = (VkDescriptorBufferInfo){fr->params.buffer, (VkDeviceSize)slot * VK_PARAM_SLOT,
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
    c->f.vkCmdBindPipeline(fr->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    c->f.vkCmdBindDescriptorSets(fr->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->pipe_layout, 0, 1,
                                 &set, 0, NULL);
    const uint32_t gx = items < MAX_GROUPS_X ? (uint32_t)items : MAX_GROUPS_X;
    c->f.vkCmdDispatch(fr->cmd, gx, (uint32_t)gy, 1);
    /* The next dispatch reads what this one wrote. */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    c->f.vkCmdPipelineBarrier(fr->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
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

void vk_params_plan(const stem_plan *plan, const stem_pass *pass, vk_params *p)
{
    const stem_attention_desc *d = &plan->desc;
    const stem_config *cfg = &plan->cfg;
    p->batch = (uint32_t)pass->batch;
    p->heads = (uint32_t)pass->num_q_heads;
    p->hkv = (uint32_t)pass->num_kv_heads;
    p->n_keys = (uint32_t)pass->kv_len; /* N: visible keys (queries end there too) */
    p->head_dim = (uint32_t)d->head_dim;
    p->block_size = (uint32_t)cfg->block_size;
    p->stride = (uint32_t)cfg->stride;
    p->group = (uint32_t)plan->group;
    p->n_blocks = (uint32_t)plan->n_blocks;
    p->gqa = (uint32_t)(pass->num_q_heads / pass->num_kv_heads);
    p->selector = (uint32_t)cfg->selector;
    p->sink_blocks = (uint32_t)(cfg->sink_blocks > 0 ? cfg->sink_blocks : 0);
    p->local_blocks = (uint32_t)(cfg->local_blocks > 0 ? cfg->local_blocks : 0);
    p->flags = plan->dense ? VKF_DENSE : 0u;
    if (stem_xattn_diag_only(plan))
        p->flags |= VKF_XATTN_DIAG;
    p->scale = plan->scale;
    p->route = (float)((double)plan->scale /
                       ((double)cfg->stride * cfg->norm * plan->group * plan->group));
    p->beta = cfg->beta;
    p->tau = cfg->xattn_threshold;
    p->q_offset = (uint32_t)pass->q_offset;
    p->row0 = (uint32_t)pass->row0;
    p->n_rows = (uint32_t)pass->n_rows;
}

/* ---------------------------------------------------------------- stage */

stem_status vk_stage_run(stem_vk_context *c, const stem_tensor *const *ts, int n,
                         uint32_t out_mask, vk_record_fn record, void *arg)
{
    const int wrapped = vk_any_wrapped(ts, n);
    stem_status st = wrapped ? vk_sync_wrapped_in(c, ts, n) : STEM_OK;
    if (st == STEM_OK)
        st = vk_begin(c);
    if (st != STEM_OK)
        return st;
    st = record(c, arg);
    if (st != STEM_OK) {
        vk_abort(c);
        return st;
    }
    st = vk_submit(c, wrapped || c->tune.sync_stages);
    if (st != STEM_OK || !wrapped)
        return st;
    const stem_tensor *outs[8];
    int m = 0;
    for (int i = 0; i < n && m < 8; i++)
        if (out_mask & (1u << i))
            outs[m++] = ts[i];
    return vk_sync_wrapped_out(c, outs, m);
}
