/* Contexts (one device + its queue) and buffers. */
#include "stem_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stem_context_desc_init(stem_context_desc *desc)
{
    if (!desc)
        return;
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    desc->device = STEM_DEVICE_AUTO;
}

static void context_free(stem_context *ctx)
{
    free(ctx->cache_dir);
    free(ctx);
}

static stem_status context_open(const stem_context_desc *desc, const stem_device_info *dev,
                                uint32_t global_index, stem_context **out)
{
    const stem_backend_ops *ops = stem_backend_ops_get(dev->backend);
    if (!ops)
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "backend %s not compiled in",
                              stem_backend_name(dev->backend));
    stem_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "stem_context_create: out of host memory");
    ctx->ops = ops;
    ctx->desc = *desc;
    ctx->device = *dev;
    ctx->backend_index = dev->backend_index;
    /* One copy for every backend: the caller's string need not outlive the call. */
    if (desc->cache_dir) {
        const size_t len = strlen(desc->cache_dir);
        ctx->cache_dir = malloc(len + 1);
        if (!ctx->cache_dir) {
            free(ctx);
            return stem_set_error(STEM_ERR_OUT_OF_MEMORY,
                                  "stem_context_create: out of host memory");
        }
        memcpy(ctx->cache_dir, desc->cache_dir, len + 1);
    }
    ctx->desc.cache_dir = ctx->cache_dir;
    stem_status st = ops->context_init(ctx, dev->backend_index);
    if (st != STEM_OK) {
        context_free(ctx);
        return st;
    }
    stem_log(ctx, STEM_LOG_INFO, "context: device %u, %s \"%s\" (%s)%s", global_index,
             stem_backend_name(dev->backend), dev->name, dev->detail,
             desc->native_queue ? ", on the caller's queue" : "");
    *out = ctx;
    return STEM_OK;
}

stem_status stem_context_create(const stem_context_desc *desc, stem_context **out)
{
    stem_context_desc d;
    stem_context_desc_init(&d);
    if (desc) {
        stem_enter_log(NULL, NULL); /* desc is not known to be valid yet */
        stem_status st = stem_struct_in(&d, sizeof d, desc, STEM_MIN_CONTEXT_DESC,
                                        "stem_context_create", "desc", "stem_context_desc_init");
        if (st != STEM_OK)
            return st;
    }
    stem_enter_log(d.log, d.log_user);
    if (!out)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_context_create: out is NULL");
    if (d.num_threads < 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_context_create: num_threads=%d must be >= 0", d.num_threads);
    /* Probing is not the caller's failure: whatever a probe records is
     * neither logged nor left in stem_last_error(). */
    stem_log_fn log;
    void *user;
    stem_log_mute(&log, &user);
    uint32_t count = stem_registry_device_count();
    stem_device_info dev;
    stem_device_info_init(&dev);
    const int found = d.device != STEM_DEVICE_AUTO && d.device >= 0 &&
                      (uint32_t)d.device < count && stem_registry_device((uint32_t)d.device, &dev);
    stem_enter_log(log, user);
    if (d.device != STEM_DEVICE_AUTO) {
        if (!found)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "stem_context_create: device %d out of range (%u devices)",
                                  d.device, count);
        stem_status st = context_open(&d, &dev, (uint32_t)d.device, out);
        if (st == STEM_OK)
            stem_enter_log(log, user); /* anything a backend recorded on the way */
        return st;
    }
    /* AUTO: the first device that opens, in the list's best-first order,
     * taking real GPUs first, then the CPU backend, and only then GPU
     * backends that run on a CPU (PoCL, lavapipe): those are slower than the
     * CPU backend on the same cores. A device that fails to open is a
     * warning, not an error, unless none opens. */
    int tried = 0;
    char why[512] = "";
    for (int pass = 0; pass < 3; ++pass)
        for (uint32_t i = 0; i < count; ++i) {
            stem_log_mute(&log, &user);
            const int listed = stem_registry_device(i, &dev);
            if (!listed) {
                stem_log_unmute(log, user);
                continue;
            }
            const int cpu_backend = dev.backend == STEM_BACKEND_CPU;
            const int tier = dev.is_gpu ? 0 : cpu_backend ? 1 : 2;
            if (tier != pass) {
                stem_log_unmute(log, user);
                continue;
            }
            stem_status st = context_open(&d, &dev, i, out);
            stem_log_unmute(log, user);
            if (st == STEM_OK) {
                stem_enter_log(log, user); /* clears the failed attempts' messages */
                return STEM_OK;
            }
            ++tried;
            snprintf(why, sizeof why, "%s", stem_last_error());
            stem_log(NULL, STEM_LOG_WARN, "context: device %u (%s \"%s\") did not open: %s", i,
                     stem_backend_name(dev.backend), dev.name, why);
        }
    if (tried)
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE,
                              "stem_context_create: no device opened (last: %s)", why);
    return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE,
                          "stem_context_create: no device available");
}

stem_status stem_context_destroy(stem_context *ctx)
{
    stem_enter(ctx);
    if (!ctx)
        return STEM_OK;
    if (ctx->live_buffers || ctx->live_plans)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_context_destroy: %zu buffer(s) and %zu plan(s) of this context "
                              "are still alive; destroy them first (nothing was destroyed)",
                              ctx->live_buffers, ctx->live_plans);
    ctx->ops->context_fini(ctx);
    context_free(ctx);
    return STEM_OK;
}

stem_status stem_context_get_device(const stem_context *ctx, stem_device_info *info)
{
    stem_enter(ctx);
    if (!ctx || !info)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_context_get_device: %s is NULL", ctx ? "info" : "ctx");
    return stem_struct_out(info, &ctx->device, sizeof ctx->device, STEM_MIN_DEVICE_INFO,
                           "stem_context_get_device", "info", "stem_device_info_init");
}

stem_status stem_synchronize(stem_context *ctx)
{
    stem_enter(ctx);
    if (!ctx)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_synchronize: ctx is NULL");
    return ctx->ops->synchronize(ctx);
}

/* ----------------------------------------------------------------- buffers */

static stem_status buffer_new(stem_context *ctx, size_t bytes, const char *fn,
                              stem_buffer **out, stem_buffer **buf)
{
    stem_enter(ctx);
    if (!ctx || !out)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                              ctx ? "out" : "ctx");
    if (bytes == 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: bytes is 0", fn);
    *buf = calloc(1, sizeof **buf);
    if (!*buf)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    (*buf)->ctx = ctx;
    (*buf)->size = bytes;
    return STEM_OK;
}

stem_status stem_buffer_create(stem_context *ctx, size_t bytes, stem_buffer **out)
{
    stem_buffer *buf = NULL;
    stem_status st = buffer_new(ctx, bytes, "stem_buffer_create", out, &buf);
    if (st != STEM_OK)
        return st;
    buf->owned = 1;
    st = ctx->ops->buffer_alloc(ctx, buf, bytes);
    if (st != STEM_OK) {
        free(buf);
        return st;
    }
    ctx->live_buffers++;
    *out = buf;
    return STEM_OK;
}

stem_status stem_buffer_wrap_host(stem_context *ctx, void *host, size_t bytes, stem_buffer **out)
{
    stem_enter(ctx);
    if (!host)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_buffer_wrap_host: host is NULL");
    stem_buffer *buf = NULL;
    stem_status st = buffer_new(ctx, bytes, "stem_buffer_wrap_host", out, &buf);
    if (st != STEM_OK)
        return st;
    st = ctx->ops->buffer_wrap_host(ctx, buf, host, bytes);
    if (st != STEM_OK) {
        free(buf);
        return st;
    }
    ctx->live_buffers++;
    *out = buf;
    return STEM_OK;
}

stem_status stem_buffer_wrap_native(stem_context *ctx, void *handle, size_t offset,
                                    size_t bytes, stem_buffer **out)
{
    const char *fn = "stem_buffer_wrap_native";
    stem_enter(ctx);
    if (!handle)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: handle is NULL", fn);
    if (offset > SIZE_MAX - bytes)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: offset %zu + bytes %zu overflows",
                              fn, offset, bytes);
    stem_buffer *buf = NULL;
    stem_status st = buffer_new(ctx, bytes, fn, out, &buf);
    if (st != STEM_OK)
        return st;
    if (!ctx->ops->buffer_wrap_native) {
        free(buf);
        return stem_set_error(STEM_ERR_UNSUPPORTED, "%s: the %s backend wraps no native memory",
                              fn, ctx->ops->name);
    }
    st = ctx->ops->buffer_wrap_native(ctx, buf, handle, offset, bytes);
    if (st != STEM_OK) {
        free(buf);
        return st;
    }
    ctx->live_buffers++;
    *out = buf;
    return STEM_OK;
}

void stem_native_handles_init(stem_native_handles *handles)
{
    if (!handles)
        return;
    memset(handles, 0, sizeof *handles);
    handles->struct_size = sizeof *handles;
}

void stem_vulkan_queue_init(stem_vulkan_queue *queue)
{
    if (!queue)
        return;
    memset(queue, 0, sizeof *queue);
    queue->struct_size = sizeof *queue;
}

stem_status stem_context_get_native(const stem_context *ctx, stem_native_handles *handles)
{
    stem_enter(ctx);
    if (!ctx || !handles)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_context_get_native: %s is NULL",
                              ctx ? "handles" : "ctx");
    stem_native_handles h;
    stem_native_handles_init(&h);
    h.backend = ctx->device.backend;
    if (ctx->ops->context_native)
        ctx->ops->context_native(ctx, &h);
    return stem_struct_out(handles, &h, sizeof h,
                           STEM_SIZE_THROUGH(stem_native_handles, queue_family),
                           "stem_context_get_native", "handles", "stem_native_handles_init");
}

void stem_buffer_destroy(stem_buffer *buf)
{
    if (!buf)
        return;
    stem_context *ctx = buf->ctx;
    stem_enter_void(ctx);
    ctx->ops->buffer_free(ctx, buf);
    if (ctx->live_buffers)
        ctx->live_buffers--;
    free(buf);
}

size_t stem_buffer_size(const stem_buffer *buf) { return buf ? buf->size : 0; }

static stem_status check_range(const stem_buffer *buf, size_t offset, const void *p,
                               size_t bytes, const char *fn)
{
    if (!buf || !p)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                              buf ? "host pointer" : "buffer");
    if (offset > buf->size || bytes > buf->size - offset)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: range [%zu, %zu + %zu) exceeds buffer size %zu", fn, offset,
                              offset, bytes, buf->size);
    return STEM_OK;
}

stem_status stem_buffer_write(stem_buffer *buf, size_t offset, const void *src, size_t bytes)
{
    stem_enter(buf ? buf->ctx : NULL);
    stem_status st = check_range(buf, offset, src, bytes, "stem_buffer_write");
    if (st != STEM_OK || bytes == 0)
        return st;
    return buf->ctx->ops->buffer_write(buf->ctx, buf, offset, src, bytes);
}

stem_status stem_buffer_read(stem_buffer *buf, size_t offset, void *dst, size_t bytes)
{
    stem_enter(buf ? buf->ctx : NULL);
    stem_status st = check_range(buf, offset, dst, bytes, "stem_buffer_read");
    if (st != STEM_OK || bytes == 0)
        return st;
    return buf->ctx->ops->buffer_read(buf->ctx, buf, offset, dst, bytes);
}
