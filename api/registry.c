/* Backend registry and the global device list (GPU backends first, CPU last). */
#include "stem_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const backend_names[STEM_BACKEND_COUNT] = {"cpu", "cuda", "opencl", "vulkan"};

/* Search order of the global device list: best first. */
static const stem_backend device_order[STEM_BACKEND_COUNT] = {
    STEM_BACKEND_CUDA, STEM_BACKEND_VULKAN, STEM_BACKEND_OPENCL, STEM_BACKEND_CPU};

const char *stem_backend_name(stem_backend backend)
{
    if ((unsigned)backend >= STEM_BACKEND_COUNT)
        return "unknown";
    return backend_names[backend];
}

const stem_backend_ops *stem_backend_ops_get(stem_backend backend)
{
    switch (backend) {
    case STEM_BACKEND_CPU: return &stem_cpu_backend_ops;
#ifdef STEM_HAVE_CUDA
    case STEM_BACKEND_CUDA: return &stem_cuda_backend_ops;
#endif
#ifdef STEM_HAVE_OPENCL
    case STEM_BACKEND_OPENCL: return &stem_opencl_backend_ops;
#endif
#ifdef STEM_HAVE_VULKAN
    case STEM_BACKEND_VULKAN: return &stem_vulkan_backend_ops;
#endif
    default: return NULL;
    }
}

int stem_backend_disabled(stem_backend backend)
{
    char var[64];
    const char *name = stem_backend_name(backend);
    size_t n = (size_t)snprintf(var, sizeof var, "STEM_DISABLE_");
    for (const char *p = name; *p && n + 1 < sizeof var; ++p)
        var[n++] = (char)toupper((unsigned char)*p);
    var[n] = '\0';
    const char *v = getenv(var);
    return v && *v && strcmp(v, "0") != 0;
}

/* Probe one backend, honouring the disable switch. */
static void probe_backend(stem_backend backend, stem_probe_result *out)
{
    memset(out, 0, sizeof *out);
    const stem_backend_ops *ops = stem_backend_ops_get(backend);
    if (!ops) {
        snprintf(out->reason, sizeof out->reason, "%s backend not compiled into this build",
                 stem_backend_name(backend));
        return;
    }
    if (stem_backend_disabled(backend)) {
        char upper[32];
        size_t n = 0;
        for (const char *p = stem_backend_name(backend); *p && n + 1 < sizeof upper; ++p)
            upper[n++] = (char)toupper((unsigned char)*p);
        upper[n] = '\0';
        snprintf(out->reason, sizeof out->reason, "disabled by STEM_DISABLE_%s", upper);
        return;
    }
    ops->probe(out);
    if (out->device_count > STEM_MAX_DEVICES_PER_BACKEND)
        out->device_count = STEM_MAX_DEVICES_PER_BACKEND;
    for (uint32_t i = 0; i < out->device_count; ++i) {
        out->devices[i].struct_size = sizeof(stem_device_info);
        out->devices[i].backend = backend;
        out->devices[i].backend_index = i;
    }
    if (out->device_count == 0 && out->reason[0] == '\0')
        snprintf(out->reason, sizeof out->reason, "no device found");
}

void stem_backend_info_init(stem_backend_info *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

stem_status stem_backend_query(stem_backend backend, stem_backend_info *info)
{
    stem_enter(NULL);
    if (!info)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_backend_query: info is NULL");
    CHECK_STRUCT_SIZE(info, STEM_MIN_BACKEND_INFO, "stem_backend_query", "stem_backend_info_init");
    if ((unsigned)backend >= STEM_BACKEND_COUNT)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_backend_query: unknown backend %d",
                              (int)backend);
    stem_probe_result r;
    probe_backend(backend, &r);
    stem_backend_info b;
    stem_backend_info_init(&b);
    b.backend = backend;
    b.compiled = stem_backend_ops_get(backend) != NULL;
    b.device_count = r.device_count;
    b.available = r.device_count > 0;
    snprintf(b.reason, sizeof b.reason, "%s", b.available ? "" : r.reason);
    return stem_struct_out(info, &b, sizeof b, STEM_MIN_BACKEND_INFO, "stem_backend_query", "info",
                           "stem_backend_info_init");
}

/* Walks the global list; returns 1 and fills *out when index exists. */
static int global_device(uint32_t index, stem_device_info *out, uint32_t *count)
{
    uint32_t seen = 0;
    stem_probe_result r;
    for (int i = 0; i < STEM_BACKEND_COUNT; ++i) {
        probe_backend(device_order[i], &r);
        if (out && index < seen + r.device_count) {
            *out = r.devices[index - seen];
            return 1;
        }
        seen += r.device_count;
    }
    if (count)
        *count = seen;
    return 0;
}

uint32_t stem_registry_device_count(void)
{
    uint32_t count = 0;
    global_device(0, NULL, &count);
    return count;
}

int stem_registry_device(uint32_t index, stem_device_info *out)
{
    return global_device(index, out, NULL);
}

stem_status stem_device_count(uint32_t *count)
{
    stem_enter(NULL);
    if (!count)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_device_count: count is NULL");
    *count = stem_registry_device_count();
    return STEM_OK;
}

void stem_device_info_init(stem_device_info *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

stem_status stem_device_get_info(uint32_t index, stem_device_info *info)
{
    stem_enter(NULL);
    if (!info)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_device_get_info: info is NULL");
    CHECK_STRUCT_SIZE(info, STEM_MIN_DEVICE_INFO, "stem_device_get_info", "stem_device_info_init");
    stem_device_info d;
    uint32_t count = 0;
    if (!global_device(index, &d, &count))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_device_get_info: index %u out of range (%u devices)", index,
                              count);
    return stem_struct_out(info, &d, sizeof d, STEM_MIN_DEVICE_INFO, "stem_device_get_info",
                           "info", "stem_device_info_init");
}
