/* CPU backend: ops table, probe, contexts, buffers, plan checks. */
#include "cpu_common.h"

#include <stdio.h>
#include <unistd.h>

int stem_cpu_default_threads(void)
{
    const char *env = getenv("STEM_CPU_THREADS");
    if (env && *env) {
        char *end = NULL;
        const long n = strtol(env, &end, 10);
        if (end && *end == 0 && n > 0 && n <= 4096)
            return (int)n;
    }
#ifdef STEM_CPU_OMP
    const int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}

/* "model name : AMD EPYC 7B13" from /proc/cpuinfo, if there is one. */
static void cpu_model_name(char *out, size_t size)
{
    snprintf(out, size, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *p = strchr(line, ':');
        if (!p)
            continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen(p);
        while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == ' ' || p[len - 1] == '\r'))
            len--;
        if (len > 0)
            snprintf(out, size, "%.*s", (int)len, p);
        break;
    }
    fclose(f);
}

/* isa= names the kernel table in use ("avx512+bf16": with the bf16 dot product). */
static void cpu_detail(char *out, size_t size, const stem_cpu_kernels *k, stem_cpu_isa detected,
                       stem_cpu_isa capped, int threads)
{
    if (capped < detected)
        snprintf(out, size, "isa=%s (detected %s, STEM_CPU_MAX_ISA=%s) threads=%d", k->name,
                 stem_cpu_isa_name(detected), stem_cpu_isa_name(capped), threads);
    else
        snprintf(out, size, "isa=%s (detected %s) threads=%d", k->name,
                 stem_cpu_isa_name(detected), threads);
}

static void cpu_probe(stem_probe_result *out)
{
    memset(out, 0, sizeof *out);
    stem_device_info *dev = &out->devices[0];
    stem_device_info_init(dev);
    dev->backend = STEM_BACKEND_CPU;
    dev->backend_index = 0;
    dev->is_gpu = 0;
    cpu_model_name(dev->name, sizeof dev->name);
#ifdef STEM_CPU_OMP
    const int procs = omp_get_num_procs();
#else
    const long procs = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    dev->compute_units = procs > 0 ? (uint32_t)procs : 1u;
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    dev->memory_bytes = pages > 0 && page_size > 0 ? (uint64_t)pages * (uint64_t)page_size : 0;
    const stem_cpu_isa detected = stem_cpu_isa_detect(), capped = stem_cpu_isa_cap(detected);
    cpu_detail(dev->detail, sizeof dev->detail, stem_cpu_kernels_for(capped, NULL), detected,
               capped, stem_cpu_default_threads());
    out->device_count = 1;
}

static stem_status cpu_context_init(stem_context *ctx, uint32_t backend_index)
{
    if (backend_index != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "cpu backend has one device, not %u",
                              (unsigned)backend_index);
    stem_cpu_context *c = calloc(1, sizeof *c);
    if (!c)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu context: out of memory");
    c->threads = ctx->desc.num_threads > 0 ? ctx->desc.num_threads : stem_cpu_default_threads();
#ifndef STEM_CPU_OMP
    c->threads = 1; /* built without OpenMP */
#endif
    c->detected = stem_cpu_isa_detect();
    const stem_cpu_isa capped = stem_cpu_isa_cap(c->detected);
    c->k = stem_cpu_kernels_for(capped, &c->isa);
    cpu_detail(ctx->device.detail, sizeof ctx->device.detail, c->k, c->detected, capped,
               c->threads);
    ctx->impl = c;
    return STEM_OK;
}

static void cpu_context_fini(stem_context *ctx)
{
    free(ctx->impl);
    ctx->impl = NULL;
}

/* Bytes the system can still give without swapping or the OOM killer
 * (MemAvailable), else physical memory; 0 if unknown. */
static uint64_t cpu_available_memory(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kib = 0;
        int found = 0;
        while (!found && fgets(line, sizeof line, f))
            found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
        fclose(f);
        if (found)
            return (uint64_t)kib * 1024u;
    }
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    return pages > 0 && page_size > 0 ? (uint64_t)pages * (uint64_t)page_size : 0;
}

/* Buffers from here on are checked against available memory first: the
 * zeroing below touches every page, so a buffer the system cannot back
 * would end in the OOM killer instead of an error (overcommit lets the
 * allocation itself succeed). */
#define CPU_CHECKED_BUFFER_BYTES ((size_t)256 << 20)

static stem_status cpu_buffer_alloc(stem_context *ctx, stem_buffer *buf, size_t bytes)
{
    (void)ctx;
    if (bytes >= CPU_CHECKED_BUFFER_BYTES) {
        const uint64_t avail = cpu_available_memory();
        if (avail != 0 && (uint64_t)bytes > avail)
            return stem_set_error(STEM_ERR_OUT_OF_MEMORY,
                                  "cpu buffer of %zu bytes: only %llu bytes of memory available",
                                  bytes, (unsigned long long)avail);
    }
    /* Zeroed so a fresh buffer reads the same on every run and backend. */
    void *p = stem_cpu_alloc(bytes ? bytes : 1);
    if (!p)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu buffer of %zu bytes: out of memory",
                              bytes);
    memset(p, 0, bytes);
    buf->impl = p;
    buf->host = p;
    return STEM_OK;
}

static stem_status cpu_buffer_wrap_host(stem_context *ctx, stem_buffer *buf, void *host,
                                        size_t bytes)
{
    (void)ctx;
    (void)bytes;
    buf->impl = NULL; /* not ours to free */
    buf->host = host;
    return STEM_OK;
}

/* The CPU's native memory is host memory: the handle is a host pointer. */
static stem_status cpu_buffer_wrap_native(stem_context *ctx, stem_buffer *buf, void *handle,
                                          size_t offset, size_t bytes)
{
    return cpu_buffer_wrap_host(ctx, buf, (char *)handle + offset, bytes);
}

static void cpu_buffer_free(stem_context *ctx, stem_buffer *buf)
{
    (void)ctx;
    free(buf->impl);
    buf->impl = NULL;
    buf->host = NULL;
}

static stem_status cpu_buffer_write(stem_context *ctx, stem_buffer *buf, size_t offset,
                                    const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes)
        memmove((char *)buf->host + offset, src, bytes);
    return STEM_OK;
}

static stem_status cpu_buffer_read(stem_context *ctx, stem_buffer *buf, size_t offset, void *dst,
                                   size_t bytes)
{
    (void)ctx;
    if (bytes)
        memmove(dst, (const char *)buf->host + offset, bytes);
    return STEM_OK;
}

static stem_status cpu_plan_check(const stem_context *ctx, const stem_attention_desc *desc,
                                  const stem_config *cfg)
{
    (void)ctx;
    (void)desc; /* dtypes and head_dim: declared in the ops table, checked by the core */
    if (cfg->block_size < 1 || cfg->block_size > 128 || cfg->stride < 1 ||
        cfg->stride > cfg->block_size || cfg->block_size % cfg->stride != 0)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "block_size=%d stride=%d not supported by backend cpu; supported: "
                              "block_size up to 128, stride dividing it",
                              (int)cfg->block_size, (int)cfg->stride);
    return STEM_OK;
}

static stem_status cpu_synchronize(stem_context *ctx)
{
    (void)ctx; /* every stage runs to completion before it returns */
    return STEM_OK;
}

const stem_backend_ops stem_cpu_backend_ops = {
    .kind = STEM_BACKEND_CPU,
    .name = "cpu",
    .probe = cpu_probe,
    .context_init = cpu_context_init,
    .context_fini = cpu_context_fini,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_wrap_host = cpu_buffer_wrap_host,
    .buffer_wrap_native = cpu_buffer_wrap_native,
    .buffer_free = cpu_buffer_free,
    .buffer_write = cpu_buffer_write,
    .buffer_read = cpu_buffer_read,
    .plan_init = NULL,
    .plan_fini = NULL,
    .plan_check = cpu_plan_check,
    .score = stem_cpu_score,
    .select = stem_cpu_select,
    .attention = stem_cpu_attention,
    .synchronize = cpu_synchronize,
    .caps = STEM_CAP_Q_OFFSET | STEM_CAP_VSTATS | STEM_CAP_LSE | STEM_CAP_VARLEN | STEM_CAP_PAGED,
    .dtypes = (1u << STEM_DTYPE_F32) | (1u << STEM_DTYPE_F16) | (1u << STEM_DTYPE_BF16),
    .head_dim_min = 8,
    .head_dim_max = 256,
    .head_dim_step = 8,
};
