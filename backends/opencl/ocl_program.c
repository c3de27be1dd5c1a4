/* OpenCL backend: kernel shapes from device limits, program builds (shared
 * per context, cached on disk when the caller gives a cache directory). */
#include "ocl_common.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

/* The .cl files, embedded at build time (generated ocl_kernel_source.c). */
extern const char stem_ocl_kernel_source[];

#define MAX_LS 256 /* work-group size the kernels are written for at most */

/* Local memory of block_attention: Q rows, the K / V tile, P, row maxima. */
static size_t attention_local_bytes(int d, int bq, int kt, int tx)
{
    return sizeof(float) * ((size_t)bq * (d + 4) + (size_t)kt * (d + 4) + (size_t)bq * (kt + 4) +
                            (size_t)bq * tx);
}

/* Local memory of the d-sliced kernel (attention_slice.cl): two slice
 * buffers (SDB), each the Q^T and K^T slices or a V slice, P^T, row maxima. */
static size_t slice_local_bytes(int d, int bq, int kt, int tx, int ds, int vs)
{
    const size_t qk = (size_t)ds * (bq + 4) + (size_t)ds * (kt + 4), v = (size_t)vs * (d + 4);
    return sizeof(float) * (2 * (qk > v ? qk : v) + (size_t)kt * (bq + 4) + (size_t)bq * tx);
}

static size_t shape_local_bytes(int d, int bq, int kt, int tx, int slice, int ds, int vs)
{
    return slice ? slice_local_bytes(d, bq, kt, tx, ds, vs) : attention_local_bytes(d, bq, kt, tx);
}

static int pow2_in(long v, long lo, long hi)
{
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* STEM_OPENCL_ATTN_TILE="rpt,tx,kpt,bq[,pf]" (tuning runs) replaces the GPU
 * kernel's starting shape: rows per item, items per row, keys per item, rows
 * per work-group, and 1 to prefetch K / V tiles into registers.
 * "s,rpt,tx,kpt,bq[,ds[,vs[,pf]]]" selects the d-sliced kernel
 * (kernels/attention_slice.cl) instead: rpt and kpt 4 or 8, tx 1-32, and
 * optionally the d columns per Q / K slice (4-64, default 32), the keys per
 * V slice (4-128, default min(32, tx * kpt)) and pf 0 to load each slice
 * just before storing it (default 1: loads issued a slice ahead). The block size and the
 * device limits below still shrink the shape. A malformed value is an error
 * rather than silently the default, so a sweep cannot time the wrong kernel. */
static stem_status tile_override(stem_ocl_shape *t)
{
    const char *e = getenv("STEM_OPENCL_ATTN_TILE");
    if (!e || !*e)
        return STEM_OK;
    const int slice = e[0] == 's' && e[1] == ',';
    long v[7] = {0, 0, 0, 0, 0, 0, 0};
    int n = 0;
    const char *s = slice ? e + 2 : e;
    while (n < 7) {
        char *end = NULL;
        errno = 0;
        v[n] = strtol(s, &end, 10);
        if (end == s || errno != 0)
            break;
        n++;
        s = end;
        if (*s != ',')
            break;
        s++;
    }
    int ok = *s == '\0' && n >= 4 && pow2_in(v[3], 1, 128) && v[3] >= v[0];
    if (ok && !slice)
        ok = n <= 5 && pow2_in(v[0], 1, 8) && pow2_in(v[1], 4, 32) && pow2_in(v[2], 1, 8) &&
             (v[3] / v[0]) * v[1] <= MAX_LS && (n == 4 || v[4] == 0 || v[4] == 1);
    if (ok && slice)
        ok = pow2_in(v[0], 4, 8) && pow2_in(v[1], 1, 32) && pow2_in(v[2], 4, 8) &&
             (v[3] / v[0]) * v[1] <= MAX_LS && (n < 5 || pow2_in(v[4], 4, 64)) &&
             (n < 6 || pow2_in(v[5], 4, v[1] * v[2])) && (n < 7 || v[6] == 0 || v[6] == 1);
    if (!ok)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "STEM_OPENCL_ATTN_TILE=\"%s\": expected rpt,tx,kpt,bq[,pf] with rpt "
                              "and kpt in 1,2,4,8, tx in 4,8,16,32, bq a power of two in "
                              "[rpt, 128], (bq / rpt) * tx <= %d work-items, pf 0 or 1; or "
                              "s,rpt,tx,kpt,bq[,ds[,vs[,pf]]] (d-sliced kernel) with rpt and kpt "
                              "4 or 8, tx 1-32, ds 4-64, vs 4-tx*kpt, all powers of two, pf 0 "
                              "or 1",
                              e, MAX_LS);
    t->rpt = (int)v[0];
    t->tx = (int)v[1];
    t->kpt = (int)v[2];
    t->bq = (int)v[3];
    t->slice = slice;
    t->prefetch = slice ? (n == 7 ? (int)v[6] : 1) : n == 5 ? (int)v[4] : 0;
    t->ds = slice && n >= 5 ? (int)v[4] : 32;
    t->vs = slice && n >= 6 ? (int)v[5] : 32;
    return STEM_OK;
}

stem_status stem_ocl_shape_choose(const stem_ocl_limits *lim, const stem_attention_desc *desc,
                                  const stem_config *cfg, int64_t n_blocks, stem_ocl_shape *out)
{
    const int d = (int)desc->head_dim, bs = cfg->block_size;
    const size_t ls_max = lim->max_wg < MAX_LS ? lim->max_wg : MAX_LS;
    const size_t local = (size_t)(lim->local_bytes > (1u << 30) ? (1u << 30) : lim->local_bytes);
    memset(out, 0, sizeof *out);
    if (lim->tiled) {
        /* GPUs: 32 rows x 32 keys a tile, each item 4 rows x 4 keys (logits)
         * and 4 rows x d / 8 columns (outputs), 64 items; 2 rows where d >
         * 128 keeps the outputs in registers. The fastest of the shapes
         * bench/opencl/tile_sweep.sh timed on an H100 (bench/results/opencl.md).
         * Tiles stay inside one block; shrink keys, then rows, to fit the device. */
        stem_ocl_shape t = {.rpt = d <= 128 ? 4 : 2, .tx = 8, .kpt = 4, .bq = 32};
        const stem_status st = tile_override(&t);
        if (st != STEM_OK)
            return st;
        int rpt = t.rpt, tx = t.tx, kpt = t.kpt, bq = t.bq, ds = t.ds, vs = t.vs;
        const int sl = t.slice, kmin = sl ? 4 : 1; /* the sliced kernel: 4 or 8 keys an item */
        if (bq > bs)
            bq = bs;
        while (tx * kpt > bs && kpt > kmin)
            kpt /= 2;
        while (tx * kpt > bs)
            tx /= 2;
        while ((size_t)(bq / rpt * tx) > ls_max && bq > rpt)
            bq /= 2;
        if (sl && vs > tx * kpt)
            vs = tx * kpt;
        while (shape_local_bytes(d, bq, tx * kpt, tx, sl, ds, vs) > local) {
            if (sl && ds > 8 && (ds * (bq + tx * kpt + 8) >= vs * (d + 4) || vs <= 8))
                ds /= 2; /* the larger of the two slice kinds first */
            else if (sl && vs > 8)
                vs /= 2;
            else if (kpt > kmin)
                kpt /= 2, vs = sl && vs > tx * kpt ? tx * kpt : vs;
            else if (bq > rpt && bq > 8)
                bq /= 2;
            else
                break;
        }
        if (shape_local_bytes(d, bq, tx * kpt, tx, sl, ds, vs) > local ||
            (size_t)(bq / rpt * tx) > ls_max)
            return stem_set_error(STEM_ERR_UNSUPPORTED,
                                  "head_dim=%d needs more local memory (%zu bytes) or work-group "
                                  "size than this OpenCL device offers (%zu bytes, %zu items)",
                                  d, shape_local_bytes(d, bq, tx * kpt, tx, sl, ds, vs), local,
                                  lim->max_wg);
        out->bq = bq;
        out->kt = tx * kpt;
        out->rpt = rpt;
        out->tx = tx;
        out->kpt = kpt;
        out->prefetch = t.prefetch;
        out->slice = sl;
        out->ds = ds;
        out->vs = vs;
    } else {
        /* CPU devices: vectors of the native width, two a register row, so
         * d must be a multiple of 2 vw; rows per item bounded by the private
         * arrays (Q and output rows: 2 x bq x d floats). The kernel takes
         * min(bq, block_size) rows, so every block size shares a program. */
        int vw = lim->native_vw >= 16 ? 16 : lim->native_vw >= 8 ? 8 : 4;
        while (vw > 4 && d % (2 * vw) != 0)
            vw /= 2;
        out->vw = vw;
        out->bq = d <= 128 ? 128 : 64; /* 64 KiB of Q rows */
    }
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
