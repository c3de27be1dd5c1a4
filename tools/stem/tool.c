#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Every numeric stem_config knob, so parsing, help and JSON stay in step
 * with one table. */
typedef enum knob_type { K_I32, K_I64, K_F32, K_F64 } knob_type;
typedef struct knob {
    const char *flag;
    const char *json;
    knob_type type;
    size_t offset;
    const char *help;
} knob;

#define KNOB(flag, field, type, help) {flag, #field, type, offsetof(stem_config, field), help}
static const knob knobs[] = {
    KNOB("block-size", block_size, K_I32, "block size B, power of two 16..128"),
    KNOB("stride", stride, K_I32, "antidiagonal stride S"),
    KNOB("beta", beta, K_F32, "value-magnitude weight"),
    KNOB("mu", mu, K_F64, "decay ratio k_end = mu * k_start"),
    KNOB("sink", sink_blocks, K_I32, "forced initial blocks"),
    KNOB("local", local_blocks, K_I32, "forced local window, incl. diagonal"),
    KNOB("norm", norm, K_F32, "extra routing divisor"),
    KNOB("dense-below", dense_below_blocks, K_I32, "n < this: dense"),
    KNOB("medium-below", medium_below_blocks, K_I32, "n < this: medium k_start rule"),
    KNOB("medium-rate", medium_rate, K_F64, "medium rule: k = rate*n + bias"),
    KNOB("medium-bias", medium_bias, K_I32, "medium rule bias"),
    KNOB("large-rate", large_rate, K_F64, "large rule: k = int(rate*n) + bias"),
    KNOB("large-bias", large_bias, K_I32, "large rule bias"),
    KNOB("k-start", k_start, K_I32, "fixed k_start in blocks, 0 = rule"),
    KNOB("paper-short-rate", paper_short_rate, K_F64, "stem_paper rate for N <= switch"),
    KNOB("paper-long-rate", paper_long_rate, K_F64, "stem_paper rate for N > switch"),
    KNOB("paper-switch", paper_switch_tokens, K_I64, "stem_paper switch length (tokens)"),
    KNOB("paper-min", paper_min_blocks, K_I32, "stem_paper minimum k_start (blocks)"),
    KNOB("uniform-k", uniform_k, K_I32, "uniform budget, 0 = equal-cost default"),
    KNOB("tau", xattn_threshold, K_F32, "xattention mass threshold"),
    KNOB("dense-layers", dense_layers, K_I32, "layers below this run dense"),
    KNOB("dense-above", dense_above_density, K_F64, "budget density >= this: run dense, 0 = off"),
};
#define NKNOBS (sizeof knobs / sizeof knobs[0])

void tool_opts_init(tool_opts *o) {
    memset(o, 0, sizeof *o);
    stem_config_init(&o->cfg);
    o->scale = 0.0f;
    o->layer = -1;
    o->device = STEM_DEVICE_AUTO;
    o->backend = NULL;
    o->threads = 0;
}

int tool_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("stem: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int tool_fail(stem_status st, const char *what) {
    const char *detail = stem_last_error();
    fprintf(stderr, "stem: %s: %s%s%s\n", what, stem_status_name(st), *detail ? ": " : "",
            detail);
    return 1;
}

const char *tool_take(int argc, char **argv, int *i, const char *name, int *matched) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    *matched = 0;
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=') {
        *matched = 1;
        return a + n + 1;
    }
    if (a[n] != '\0')
        return NULL;
    *matched = 1;
    if (*i + 1 >= argc) {
        tool_error("%s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

int tool_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return tool_error("%s: '%s' is not an integer in [%lld, %lld]", opt, s, (long long)lo,
                          (long long)hi),
               -1;
    *out = v;
    return 0;
}

int tool_parse_i32(const char *opt, const char *s, int32_t lo, int32_t hi, int32_t *out) {
    int64_t v;
    if (tool_parse_i64(opt, s, lo, hi, &v) != 0)
        return -1;
    *out = (int32_t)v;
    return 0;
}

int tool_parse_f64(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return tool_error("%s: '%s' is not a finite number", opt, s), -1;
    *out = v;
    return 0;
}

int tool_parse_i64_list(const char *opt, const char *s, int64_t *out, int cap, int *count) {
    char tok[32];
    *count = 0;
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof tok)
            return tool_error("%s: bad list '%s' (expected e.g. 8192,16384)", opt, s), -1;
        if (*count >= cap)
            return tool_error("%s: at most %d values", opt, cap), -1;
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (tool_parse_i64(opt, tok, 1, INT64_C(1) << 40, &out[(*count)++]) != 0)
            return -1;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int set_knob(const knob *k, tool_opts *o, const char *opt, const char *val) {
    char *base = (char *)&o->cfg + k->offset;
    double d;
    switch (k->type) {
    case K_I32: {
        int32_t v;
        if (tool_parse_i32(opt, val, INT32_MIN, INT32_MAX, &v) != 0)
            return -1;
        memcpy(base, &v, sizeof v);
        return 0;
    }
    case K_I64: {
        int64_t v;
        if (tool_parse_i64(opt, val, INT64_MIN, INT64_MAX, &v) != 0)
            return -1;
        memcpy(base, &v, sizeof v);
        return 0;
    }
    case K_F32: {
        if (tool_parse_f64(opt, val, &d) != 0)
            return -1;
        float v = (float)d;
        memcpy(base, &v, sizeof v);
        return 0;
    }
    case K_F64:
        if (tool_parse_f64(opt, val, &d) != 0)
            return -1;
        memcpy(base, &d, sizeof d);
        return 0;
    }
    return -1;
}

int tool_parse_common(tool_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0)
        return 0;
    int m;
    const char *v;
    char flag[64];
    for (size_t k = 0; k < NKNOBS; k++) {
        snprintf(flag, sizeof flag, "--%s", knobs[k].flag);
        v = tool_take(argc, argv, i, flag, &m);
        if (m)
            return v && set_knob(&knobs[k], o, flag, v) == 0 ? 1 : -1;
    }
    if ((v = tool_take(argc, argv, i, "--selector", &m)) || m) {
        if (!v)
            return -1;
        if (stem_selector_from_name(v, &o->cfg.selector) != STEM_OK)
            return tool_error("--selector: unknown '%s' (stem, stem_paper, uniform, xattention, "
                              "xattention_strict, dense)",
                              v),
                   -1;
        return 1;
    }
    if ((v = tool_take(argc, argv, i, "--scale", &m)) || m) {
        double d;
        if (!v || tool_parse_f64("--scale", v, &d) != 0)
            return -1;
        o->scale = (float)d;
        return 1;
    }
    if ((v = tool_take(argc, argv, i, "--layer", &m)) || m)
        return v && tool_parse_i32("--layer", v, -1, INT32_MAX, &o->layer) == 0 ? 1 : -1;
    if ((v = tool_take(argc, argv, i, "--device", &m)) || m)
        return v && tool_parse_i32("--device", v, -1, INT32_MAX, &o->device) == 0 ? 1 : -1;
    if ((v = tool_take(argc, argv, i, "--threads", &m)) || m)
        return v && tool_parse_i32("--threads", v, 0, 4096, &o->threads) == 0 ? 1 : -1;
    if ((v = tool_take(argc, argv, i, "--backend", &m)) || m) {
        if (!v)
            return -1;
        o->backend = v;
        return 1;
    }
    return 0;
}

void tool_print_common_help(FILE *f) {
    fputs("device options:\n"
          "  --device N            global device index (see `stem info`); default: best GPU, "
          "else CPU\n"
          "  --backend NAME        first device of cpu | cuda | opencl | vulkan\n"
          "  --threads N           CPU backend threads (0 = default)\n"
          "algorithm options (defaults reproduce the official code):\n"
          "  --selector NAME       stem | stem_paper | uniform | xattention |\n"
          "                        xattention_strict | dense\n"
          "  --scale X             softmax scale (0 = 1/sqrt(d))\n"
          "  --layer N             model layer index (-1 = unknown, never forced dense)\n",
          f);
    stem_config def;
    stem_config_init(&def);
    for (size_t k = 0; k < NKNOBS; k++) {
        const char *base = (const char *)&def + knobs[k].offset;
        char dv[64];
        switch (knobs[k].type) {
        case K_I32: {
            int32_t x;
            memcpy(&x, base, sizeof x);
            snprintf(dv, sizeof dv, "%d", (int)x);
            break;
        }
        case K_I64: {
            int64_t x;
            memcpy(&x, base, sizeof x);
            snprintf(dv, sizeof dv, "%lld", (long long)x);
            break;
        }
        case K_F32: {
            float x;
            memcpy(&x, base, sizeof x);
            snprintf(dv, sizeof dv, "%g", (double)x);
            break;
        }
        case K_F64: {
            double x;
            memcpy(&x, base, sizeof x);
            snprintf(dv, sizeof dv, "%g", x);
            break;
        }
        }
        char flag[64];
        snprintf(flag, sizeof flag, "--%s X", knobs[k].flag);
        fprintf(f, "  %-21s %s (%s)\n", flag, knobs[k].help, dv);
    }
}

int tool_backend_count(void) {
    int n = 0;
    while (n < TOOL_MAX_BACKENDS && strcmp(stem_backend_name((stem_backend)n), "unknown") != 0)
        n++;
    return n;
}

static void tool_log(void *user, int level, const char *message) {
    (void)user;
    if (level <= STEM_LOG_INFO)
        fprintf(stderr, "stem: %s\n", message);
}

static int find_backend(const char *name, stem_backend *out) {
    for (int b = 0; b < tool_backend_count(); b++) {
        if (!strcasecmp(name, stem_backend_name((stem_backend)b))) {
            *out = (stem_backend)b;
            return 0;
        }
    }
    return -1;
}

int tool_open_context(const tool_opts *o, stem_context **ctx, stem_device_info *info) {
    stem_context_desc desc;
    stem_context_desc_init(&desc);
    if (getenv("STEM_TOOL_LOG")) /* the library's decisions (device, kernel path) on stderr */
        desc.log = tool_log;
    desc.device = o->device;
    desc.num_threads = o->threads;
    stem_status st;
    if (o->backend) {
        stem_backend b;
        if (o->device != STEM_DEVICE_AUTO)
            return tool_error("use --device or --backend, not both");
        if (find_backend(o->backend, &b) != 0)
            return tool_error("--backend: unknown '%s' (cpu, cuda, opencl, vulkan)", o->backend);
        stem_backend_info bi;
        stem_backend_info_init(&bi);
        if ((st = stem_backend_query(b, &bi)) != STEM_OK)
            return tool_fail(st, "stem_backend_query");
        if (!bi.available)
            return tool_error("backend %s has no usable device: %s", stem_backend_name(b),
                              bi.reason[0] ? bi.reason : (bi.compiled ? "unknown" : "not built"));
        uint32_t n = 0;
        if ((st = stem_device_count(&n)) != STEM_OK)
            return tool_fail(st, "stem_device_count");
        desc.device = -2;
        for (uint32_t d = 0; d < n && desc.device == -2; d++) {
            stem_device_info di;
            stem_device_info_init(&di);
            if (stem_device_get_info(d, &di) == STEM_OK && di.backend == b)
                desc.device = (int32_t)d;
        }
        if (desc.device == -2)
            return tool_error("backend %s reports no device in the device list",
                              stem_backend_name(b));
    }
    if ((st = stem_context_create(&desc, ctx)) != STEM_OK)
        return tool_fail(st, "stem_context_create");
    stem_device_info_init(info);
    if ((st = stem_context_get_device(*ctx, info)) != STEM_OK) {
        stem_context_destroy(*ctx);
        *ctx = NULL;
        return tool_fail(st, "stem_context_get_device");
    }
    return 0;
}

double tool_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void tool_utc_date(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "unknown");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double tool_median(double *v, int n) {
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

size_t tool_mul_size(int count, const int64_t *factors, size_t elem) {
    size_t r = elem;
    for (int i = 0; i < count; i++) {
        if (factors[i] < 0)
            return 0;
        if (factors[i] != 0 && r > SIZE_MAX / (uint64_t)factors[i])
            return 0;
        r *= (size_t)factors[i];
    }
    return r;
}

void tool_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void tool_json_number(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

void tool_json_config(FILE *f, const tool_opts *o, const char *indent) {
    fprintf(f, "{\n%s  \"selector\": ", indent);
    tool_json_string(f, stem_selector_name(o->cfg.selector));
    for (size_t k = 0; k < NKNOBS; k++) {
        const char *base = (const char *)&o->cfg + knobs[k].offset;
        fprintf(f, ",\n%s  \"%s\": ", indent, knobs[k].json);
        switch (knobs[k].type) {
        case K_I32: {
            int32_t x;
            memcpy(&x, base, sizeof x);
            fprintf(f, "%d", (int)x);
            break;
        }
        case K_I64: {
            int64_t x;
            memcpy(&x, base, sizeof x);
            fprintf(f, "%lld", (long long)x);
            break;
        }
        case K_F32: { /* %.7g: 0.2f prints as 0.2, not 0.200000003 */
            float x;
            memcpy(&x, base, sizeof x);
            if (isfinite(x))
                fprintf(f, "%.7g", (double)x);
            else
                fputs("null", f);
            break;
        }
        case K_F64: {
            double x;
            memcpy(&x, base, sizeof x);
            tool_json_number(f, x);
            break;
        }
        }
    }
    fprintf(f, ",\n%s  \"softmax_scale\": %.7g", indent, (double)o->scale);
    fprintf(f, ",\n%s  \"layer_index\": %d\n%s}", indent, (int)o->layer, indent);
}

void tool_device_line(const stem_device_info *info, char *buf, size_t n) {
    snprintf(buf, n, "%s:%u %s%s%s%s", stem_backend_name(info->backend),
             (unsigned)info->backend_index, info->name, info->detail[0] ? " (" : "",
             info->detail, info->detail[0] ? ")" : "");
}

stem_tensor tool_view(stem_buffer *b, stem_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    stem_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = b;
    t.dtype = dt;
    t.dims[0] = d0, t.dims[1] = d1, t.dims[2] = d2, t.dims[3] = d3;
    t.strides[0] = s0, t.strides[1] = s1, t.strides[2] = s2, t.strides[3] = s3;
    return t;
}
