/* OpenCL backend: kernel shapes from device limits, program builds (shared
 * per context, cached on disk when the caller gives a cache directory). */
#include "ocl_common.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

/* The .cl files, embedded at build time (generated ocl_kernel_source.c). */
extern const char stem_ocl_kernel_source[];

#define MAX_LS 256 /* work-group size the kernels are written for at most */

static size_t attention_local_bytes(int d, int bq, int kt)
{
    return sizeof(float) *
           ((size_t)bq * (d + 1) + 2 * (size_t)kt * (d + 1) + (size_t)bq * (kt + 1));
}

stem_status stem_ocl_shape_choose(const stem_ocl_limits *lim, const stem_attention_desc *desc,
                                  const stem_config *cfg, int64_t n_blocks, stem_ocl_shape *out)
{
    const int d = (int)desc->head_dim, bs = cfg->block_size;
    const size_t ls_max = lim->max_wg < MAX_LS ? lim->max_wg : MAX_LS;
    const size_t local = (size_t)(lim->local_bytes > (1u << 30) ? (1u << 30) : lim->local_bytes);
    memset(out, 0, sizeof *out);
    /* Attention: at most 32 accumulators per work-item, TPR work-items a row. */
    int tpr = 1;
    while ((d + tpr - 1) / tpr > 32)
        tpr *= 2;
    /* GPUs: large tiles. CPUs (PoCL): the smallest block's tiles for every
     * block size, so plans share one program per dtype and head_dim (each
     * build costs seconds there). */
    const int bq_max = lim->tiled ? 64 : 16, kt_max = lim->tiled ? 32 : 16;
    int bq = bs < bq_max ? bs : bq_max, kt = bs < kt_max ? bs : kt_max;
    while (bq > 1 && (size_t)(bq * tpr) > ls_max)
        bq /= 2;
    /* Shrink to fit: keys per tile down to 16 first, then rows to 32, then
     * both down to 8 (48 KiB at d = 128 gives 32 rows x 16 keys). */
    while (attention_local_bytes(d, bq, kt) > local) {
        if (kt > 16)
            kt /= 2;
        else if (bq > 32)
            bq /= 2;
        else if (kt > 8)
            kt /= 2;
        else if (bq > 8)
            bq /= 2;
        else
            break;
    }
    if (attention_local_bytes(d, bq, kt) > local || (size_t)(bq * tpr) > ls_max || bq < 1)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "head_dim=%d needs more local memory (%zu bytes) or work-group "
                              "size than this OpenCL device offers (%zu bytes, %zu items)",
                              d, attention_local_bytes(d, 8, 8), local, lim->max_wg);
    out->bq = bq;
    out->kt = kt;
    out->tpr = tpr;
    /* Selection: a row of scores (f32), its keep flags and a scan in local memory. */
    int sel_ls = 1;
    while ((size_t)sel_ls * 2 <= ls_max)
        sel_ls *= 2;
    const size_t scan_bytes = (size_t)sel_ls * (sizeof(double) + sizeof(int)) + 256;
    size_t cap = local > scan_bytes ? (local - scan_bytes) / (sizeof(float) + 1) : 0;
    if (cap > 16384)
        cap = 16384;
    cap &= ~(size_t)31;
    if ((int64_t)cap < n_blocks)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "%lld key blocks per row exceed what the OpenCL selection kernel "
                              "holds in this device's local memory (%zu); use a larger "
                              "block_size",
                              (long long)n_blocks, cap);
    out->sel_cap = (int)cap;
    out->sel_ls = sel_ls;
    return STEM_OK;
}

/* ------------------------------------------------------------ disk cache */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void cache_path(const stem_ocl_context *c, const char *options, char *out, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, c->device_key, strlen(c->device_key) + 1);
    h = fnv1a(h, options, strlen(options) + 1);
    h = fnv1a(h, stem_ocl_kernel_source, strlen(stem_ocl_kernel_source));
    snprintf(out, size, "%s/stem-opencl-%016llx.bin", c->cache_dir, (unsigned long long)h);
}

/* A program from a cached binary, built; NULL when there is none or it fails. */
static cl_program load_cached(stem_ocl_context *c, const char *path, const char *options)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *bin = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size > 0 && fseek(f, 0, SEEK_SET) == 0 && (bin = malloc((size_t)size)) != NULL &&
        fread(bin, 1, (size_t)size, f) != (size_t)size) {
        free(bin);
        bin = NULL;
    }
    fclose(f);
    if (!bin)
        return NULL;
    const size_t len = (size_t)size;
    const unsigned char *bins[1] = {bin};
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    cl_program p =
        c->cl->clCreateProgramWithBinary(c->context, 1, &c->device, &len, bins, &status, &err);
    free(bin);
    if (err != CL_SUCCESS || status != CL_SUCCESS || !p) {
        if (p)
            c->cl->clReleaseProgram(p);
        return NULL;
    }
    if (c->cl->clBuildProgram(p, 1, &c->device, options, NULL, NULL) != CL_SUCCESS) {
        c->cl->clReleaseProgram(p);
        return NULL; /* stale or foreign binary: rebuild from source */
    }
    return p;
}

/* Best effort: a failed write only costs the next process a rebuild. */
static void store_cached(stem_ocl_context *c, cl_program p, const char *path)
{
    size_t size = 0;
    if (c->cl->clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
            CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *bin = malloc(size);
    if (!bin)
        return;
    unsigned char *bins[1] = {bin};
    if (c->cl->clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            const int ok = fwrite(bin, 1, size, f) == size;
            if (fclose(f) == 0 && ok)
                ok ? (void)rename(tmp, path) : (void)0;
            remove(tmp); /* no-op after a successful rename */
        }
    }
    free(bin);
}

/* STEM_ERR_KERNEL_BUILD with the build log (its first error onwards). */
static stem_status build_failure(stem_ocl_context *c, cl_program p, cl_int err,
                                 const char *options)
{
    size_t size = 0;
    char *log = NULL;
    if (c->cl->clGetProgramBuildInfo(p, c->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) ==
            CL_SUCCESS &&
        size > 0 && (log = malloc(size + 1)) != NULL) {
        if (c->cl->clGetProgramBuildInfo(p, c->device, CL_PROGRAM_BUILD_LOG, size, log, NULL) !=
            CL_SUCCESS)
            log[0] = '\0';
        log[size] = '\0';
    }
    const char *from = log ? log : "";
    const char *e = strstr(from, "error");
    if (e) {
        while (e > from && e[-1] != '\n')
            e--; /* the whole line, with its file:line prefix */
        from = e;
    }
    const stem_status st =
        stem_set_error(STEM_ERR_KERNEL_BUILD, "opencl: kernel build failed (%s) with options "
                                              "\"%s\"; build log: %s",
                       stem_ocl_error_name(err), options, from[0] ? from : "(empty)");
    free(log);
    return st;
}

stem_status stem_ocl_program_get(stem_ocl_context *c, const char *options, cl_program *out)
{
    for (stem_ocl_program *e = c->programs; e; e = e->next)
        if (strcmp(e->options, options) == 0) {
            c->cl->clRetainProgram(e->program);
            *out = e->program;
            return STEM_OK;
        }
    stem_ocl_program *entry = calloc(1, sizeof *entry);
    const size_t olen = strlen(options);
    if (!entry || !(entry->options = malloc(olen + 1))) {
        free(entry);
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "opencl: out of host memory");
    }
    memcpy(entry->options, options, olen + 1);

    char path[4096];
    cl_program p = NULL;
    if (c->cache_dir) {
        cache_path(c, options, path, sizeof path);
        p = load_cached(c, path, options);
    }
    if (!p) {
        const char *src = stem_ocl_kernel_source;
        cl_int err = CL_SUCCESS;
        p = c->cl->clCreateProgramWithSource(c->context, 1, &src, NULL, &err);
        if (err != CL_SUCCESS || !p) {
            free(entry->options);
            free(entry);
            return stem_ocl_fail(err, "clCreateProgramWithSource");
        }
        err = c->cl->clBuildProgram(p, 1, &c->device, options, NULL, NULL);
        if (err != CL_SUCCESS) {
            const stem_status st = build_failure(c, p, err, options);
            c->cl->clReleaseProgram(p);
            free(entry->options);
            free(entry);
            return st;
        }
        if (c->cache_dir)
            store_cached(c, p, path);
    }
    entry->program = p;
    entry->next = c->programs;
    c->programs = entry;
    c->cl->clRetainProgram(p);
    *out = p;
    return STEM_OK;
}

void stem_ocl_programs_release(stem_ocl_context *c)
{
    stem_ocl_program *e = c->programs;
    while (e) {
        stem_ocl_program *next = e->next;
        c->cl->clReleaseProgram(e->program);
        free(e->options);
        free(e);
        e = next;
    }
    c->programs = NULL;
}
