/* ABI and lifetime rules of stem.h, on every device: the log callback,
 * stem_last_error() cleared by successful calls, the destroy order,
 * struct_size growth both ways, the version numbers, and the context's own
 * copy of cache_dir. */
#if defined(__linux__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#if defined(__linux__)
#include <dirent.h>
#include <unistd.h>
#endif

#include "harness.h"
#include "run.h"

/* ------------------------------------------------------------ helpers */

#define LOG_MAX 64
typedef struct log_sink {
    int n;
    int level[LOG_MAX];
    char text[LOG_MAX][512];
} log_sink;

static void collect(void *user, int level, const char *message)
{
    log_sink *s = user;
    if (s->n < LOG_MAX) {
        s->level[s->n] = level;
        snprintf(s->text[s->n], sizeof s->text[0], "%s", message);
    }
    s->n++;
}

/* Index of the first entry at `level` containing `needle`, or -1. */
static int find_log(const log_sink *s, int level, const char *needle)
{
    for (int i = 0; i < s->n && i < LOG_MAX; ++i)
        if (s->level[i] == level && strstr(s->text[i], needle))
            return i;
    return -1;
}

static void dump_log(const log_sink *s)
{
    for (int i = 0; i < s->n && i < LOG_MAX; ++i)
        fprintf(stderr, "  log[%d] level %d: %s\n", i, s->level[i], s->text[i]);
}

static stem_context *open_ctx(conf_test *T, stem_context_desc *cd)
{
    cd->device = (int32_t)T->dev->global_index;
    stem_context *c = NULL;
    stem_status st = stem_context_create(cd, &c);
    if (st != STEM_OK)
        fail_msg("stem_context_create(device %u): %s: %s", T->dev->global_index,
                 stem_status_name(st), stem_last_error());
    return c;
}

/* The small sparse problem of the misuse fixture: B=1, Hq=2, Hkv=1, N=40,
 * d=64, f32, block 16 (3 query blocks). */
static void small_problem(stem_attention_desc *d, stem_config *c)
{
    stem_attention_desc_init(d);
    d->num_q_heads = 2;
    d->num_kv_heads = 1;
    d->q_len = d->kv_len = 40;
    d->head_dim = 64;
    d->dtype = STEM_DTYPE_F32;
    stem_config_init(c);
    c->block_size = 16;
    c->stride = 8;
    c->k_start = 1;
    c->sink_blocks = 0;
    c->local_blocks = 1;
}

static void expect_clear(const char *after)
{
    const char *m = stem_last_error();
    if (!m || m[0] != '\0')
        fail_msg("stem_last_error() after a successful %s is \"%s\", expected \"\"", after,
                 m ? m : "(null)");
}

/* Leaves a failure message behind (on no context). */
static void leave_error(void)
{
    stem_selector s;
    if (stem_selector_from_name("abi-marker", &s) == STEM_OK || !stem_last_error()[0])
        fail_msg("stem_selector_from_name(\"abi-marker\") must fail with a message");
}

/* -------------------------------------------------------------- cases */

enum { AB_LOG, AB_LOG_ISOLATED, AB_CLEARED, AB_AUTO_CLEARED, AB_DESTROY_ORDER, AB_GROWTH,
       AB_VERSION, AB_CACHE_DIR, AB_N };
static const char *const ab_name[AB_N] = {
    "abi_log_callback", "abi_log_only_own_context", "abi_last_error_cleared",
    "abi_auto_context_no_stale_error", "abi_destroy_order", "abi_struct_growth",
    "abi_version", "abi_cache_dir_copied"};

static void abi_log(conf_test *T, const conf_misuse *m)
{
    (void)m;
    log_sink *s = res_alloc(&T->res, sizeof *s);
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.log = collect;
    cd.log_user = s;
    stem_context *c = open_ctx(T, &cd);
    res_add_context(&T->res, c);
    if (find_log(s, STEM_LOG_INFO, "context:") < 0 ||
        find_log(s, STEM_LOG_INFO, T->dev->info.name) < 0) {
        dump_log(s);
        fail_msg("no INFO line naming the device \"%s\" at context creation", T->dev->info.name);
    }
    /* Plan creation: shape, dense/sparse, budget, pass split. */
    stem_attention_desc d;
    stem_config cfg;
    small_problem(&d, &cfg);
    stem_plan *plan = NULL;
    s->n = 0;
    if (stem_plan_create(c, &d, &cfg, &plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(&T->res, plan);
    if (find_log(s, STEM_LOG_INFO, "N=40") < 0 || find_log(s, STEM_LOG_INFO, "sparse") < 0 ||
        find_log(s, STEM_LOG_INFO, "k_start 1") < 0 || find_log(s, STEM_LOG_INFO, "pass") < 0) {
        dump_log(s);
        fail_msg("plan creation logged no INFO lines with shape, sparsity, budget and passes");
    }
    for (int i = 0; i < s->n && i < LOG_MAX; ++i)
        if (s->level[i] == STEM_LOG_ERROR) {
            dump_log(s);
            fail_msg("a successful plan creation logged an ERROR");
        }
    /* A misuse: ERROR with exactly the stem_last_error() text. */
    s->n = 0;
    d.batch = 0;
    stem_plan *bad = NULL;
    if (stem_plan_create(c, &d, &cfg, &bad) != STEM_ERR_INVALID_ARGUMENT || bad)
        fail_msg("stem_plan_create(batch = 0) must fail with STEM_ERR_INVALID_ARGUMENT");
    if (s->n != 1 || s->level[0] != STEM_LOG_ERROR || strcmp(s->text[0], stem_last_error()) != 0) {
        dump_log(s);
        fail_msg("a failed stem_plan_create must log one ERROR equal to stem_last_error() "
                 "(\"%s\")", stem_last_error());
    }
    /* A failure deep in a stage and one in a buffer call reach the log too. */
    s->n = 0;
    stem_buffer *b = NULL;
    if (stem_buffer_create(c, 64, &b) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    res_add_buffer(&T->res, b);
    char tmp[128] = {0};
    if (stem_buffer_read(b, 32, tmp, sizeof tmp) != STEM_ERR_INVALID_ARGUMENT)
        fail_msg("stem_buffer_read past the end must fail");
    if (find_log(s, STEM_LOG_ERROR, "stem_buffer_read") < 0) {
        dump_log(s);
        fail_msg("a failed stem_buffer_read logged no ERROR");
    }
    s->n = 0;
    stem_tensor q = stem_tensor_bhnd(b, 0, STEM_DTYPE_F32, 1, 2, 40, 64);
    if (stem_score(plan, &q, &q, &q, &q) != STEM_ERR_INVALID_ARGUMENT)
        fail_msg("stem_score with wrong tensors must fail");
    if (s->n != 1 || s->level[0] != STEM_LOG_ERROR || strcmp(s->text[0], stem_last_error()) != 0) {
        dump_log(s);
        fail_msg("a failed stem_score must log one ERROR equal to stem_last_error()");
    }
    /* Nothing logged by calls that succeed without a decision to report. */
    s->n = 0;
    if (stem_buffer_write(b, 0, tmp, 64) != STEM_OK || stem_synchronize(c) != STEM_OK)
        fail_msg("stem_buffer_write / stem_synchronize: %s", stem_last_error());
    for (int i = 0; i < s->n && i < LOG_MAX; ++i)
        if (s->level[i] <= STEM_LOG_WARN) {
            dump_log(s);
            fail_msg("successful buffer calls logged a warning or an error");
        }
}

/* A context's callback hears only its own calls, and a failure on a call
 * without any context (or before one exists) reaches nobody's. */
static void abi_log_isolated(conf_test *T, const conf_misuse *m)
{
    (void)m;
    log_sink *s = res_alloc(&T->res, sizeof *s);
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.log = collect;
    cd.log_user = s;
    stem_context *c = open_ctx(T, &cd);
    res_add_context(&T->res, c);
    s->n = 0;
    stem_buffer *b = NULL;
    if (stem_buffer_create(T->dev->ctx, 0, &b) != STEM_ERR_INVALID_ARGUMENT) /* other context */
        fail_msg("stem_buffer_create(0 bytes) must fail");
    leave_error(); /* no context at all */
    uint32_t n = 0;
    if (stem_device_count(&n) != STEM_OK)
        fail_msg("stem_device_count: %s", stem_last_error());
    if (s->n != 0) {
        dump_log(s);
        fail_msg("the callback heard %d lines from calls on other contexts", s->n);
    }
    /* A desc with a callback that fails validation still reports it. */
    stem_context_desc bad;
    stem_context_desc_init(&bad);
    bad.log = collect;
    bad.log_user = s;
    bad.num_threads = -1;
    stem_context *c2 = NULL;
    if (stem_context_create(&bad, &c2) != STEM_ERR_INVALID_ARGUMENT || c2)
        fail_msg("stem_context_create(num_threads = -1) must fail");
    if (s->n != 1 || s->level[0] != STEM_LOG_ERROR || strcmp(s->text[0], stem_last_error()) != 0) {
        dump_log(s);
        fail_msg("a failed stem_context_create must log one ERROR to desc.log");
    }
}

static void abi_cleared(conf_test *T, const conf_misuse *m)
{
    (void)m;
    stem_context *ctx = T->dev->ctx;
    conf_res *R = &T->res;
    uint32_t n = 0;
    leave_error();
    if (stem_device_count(&n) != STEM_OK)
        fail_msg("stem_device_count: %s", stem_last_error());
    expect_clear("stem_device_count");
    stem_device_info di;
    stem_device_info_init(&di);
    leave_error();
    if (stem_device_get_info(T->dev->global_index, &di) != STEM_OK)
        fail_msg("stem_device_get_info: %s", stem_last_error());
    expect_clear("stem_device_get_info");
    leave_error();
    if (stem_context_get_device(ctx, &di) != STEM_OK)
        fail_msg("stem_context_get_device: %s", stem_last_error());
    expect_clear("stem_context_get_device");
    stem_backend_info bi;
    stem_backend_info_init(&bi);
    leave_error();
    if (stem_backend_query(STEM_BACKEND_CPU, &bi) != STEM_OK)
        fail_msg("stem_backend_query: %s", stem_last_error());
    expect_clear("stem_backend_query");
    stem_selector sel;
    leave_error();
    if (stem_selector_from_name("uniform", &sel) != STEM_OK)
        fail_msg("stem_selector_from_name: %s", stem_last_error());
    expect_clear("stem_selector_from_name");
    float f = 1.0f;
    uint16_t h = 0;
    leave_error();
    if (stem_convert(&f, STEM_DTYPE_F32, &h, STEM_DTYPE_F16, 1) != STEM_OK)
        fail_msg("stem_convert: %s", stem_last_error());
    expect_clear("stem_convert");
    leave_error();
    if (stem_synchronize(ctx) != STEM_OK)
        fail_msg("stem_synchronize: %s", stem_last_error());
    expect_clear("stem_synchronize");
    stem_buffer *b = NULL;
    leave_error();
    if (stem_buffer_create(ctx, 4096, &b) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    res_add_buffer(R, b);
    expect_clear("stem_buffer_create");
    unsigned char bytes[64] = {1, 2, 3};
    leave_error();
    if (stem_buffer_write(b, 0, bytes, sizeof bytes) != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    expect_clear("stem_buffer_write");
    leave_error();
    if (stem_buffer_read(b, 0, bytes, sizeof bytes) != STEM_OK)
        fail_msg("stem_buffer_read: %s", stem_last_error());
    expect_clear("stem_buffer_read");
    stem_attention_desc d;
    stem_config cfg;
    small_problem(&d, &cfg);
    stem_plan *plan = NULL;
    leave_error();
    if (stem_plan_create(ctx, &d, &cfg, &plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(R, plan);
    expect_clear("stem_plan_create");
    stem_plan_info pi;
    stem_plan_info_init(&pi);
    leave_error();
    if (stem_plan_get_info(plan, &pi) != STEM_OK)
        fail_msg("stem_plan_get_info: %s", stem_last_error());
    expect_clear("stem_plan_get_info");
    int32_t budget[8];
    leave_error();
    if (stem_plan_get_budget(plan, budget, 8) != STEM_OK)
        fail_msg("stem_plan_get_budget: %s", stem_last_error());
    expect_clear("stem_plan_get_budget");
    leave_error();
    if (stem_plan_set_workspace(plan, b, 0) != STEM_OK)
        fail_msg("stem_plan_set_workspace: %s", stem_last_error());
    expect_clear("stem_plan_set_workspace");
    /* A stage: select on all -inf-free zero scores into fresh lists. */
    stem_buffer *bs = NULL, *bl = NULL;
    if (stem_buffer_create(ctx, 2 * 3 * 3 * 4, &bs) != STEM_OK ||
        stem_buffer_create(ctx, 2 * 3 * 3 * 4 + 2 * 3 * 4, &bl) != STEM_OK)
        fail_msg("buffers: %s", stem_last_error());
    res_add_buffer(R, bs);
    res_add_buffer(R, bl);
    float zeros[18] = {0};
    if (stem_buffer_write(bs, 0, zeros, sizeof zeros) != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    const stem_tensor ts = stem_tensor_bhnd(bs, 0, STEM_DTYPE_F32, 1, 2, 3, 3);
    const stem_tensor ti = stem_tensor_bhnd(bl, 0, STEM_DTYPE_I32, 1, 2, 3, 3);
    const stem_tensor tc = stem_tensor_bhnd(bl, 2 * 3 * 3 * 4, STEM_DTYPE_I32, 1, 2, 3, 1);
    leave_error();
    if (stem_select(plan, &ts, &ti, &tc) != STEM_OK || stem_synchronize(ctx) != STEM_OK)
        fail_msg("stem_select: %s", stem_last_error());
    expect_clear("stem_select");
    /* A context with an explicit device. */
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    leave_error();
    stem_context *c2 = open_ctx(T, &cd);
    res_add_context(R, c2);
    expect_clear("stem_context_create(explicit device)");
}

/* Review defect A3: AUTO creation wrote "no device available" before it
 * tried any device, so a successful call left that message behind. */
static void abi_auto_cleared(conf_test *T, const conf_misuse *m)
{
    (void)m;
    leave_error();
    stem_context *c = NULL;
    if (stem_context_create(NULL, &c) != STEM_OK)
        fail_msg("stem_context_create(AUTO): %s", stem_last_error());
    res_add_context(&T->res, c);
    expect_clear("stem_context_create(AUTO)");
    stem_context_desc cd;
    stem_context_desc_init(&cd); /* device = AUTO */
    stem_context *c2 = NULL;
    if (stem_context_create(&cd, &c2) != STEM_OK)
        fail_msg("stem_context_create(AUTO desc): %s", stem_last_error());
    res_add_context(&T->res, c2);
    expect_clear("stem_context_create(AUTO desc)");
}

/* Review defect A10: the context outlived by its children. */
static void abi_destroy_order(conf_test *T, const conf_misuse *m)
{
    (void)m;
    if (stem_context_destroy(NULL) != STEM_OK)
        fail_msg("stem_context_destroy(NULL) must be a no-op returning STEM_OK");
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    stem_context *c = open_ctx(T, &cd);
    stem_buffer *b = NULL;
    if (stem_buffer_create(c, 256, &b) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    unsigned char in[256], out[256];
    for (int i = 0; i < 256; ++i)
        in[i] = (unsigned char)(i * 7 + 1);
    stem_buffer *w = NULL;
    if (stem_buffer_wrap_host(c, in, sizeof in, &w) != STEM_OK)
        w = NULL; /* GPU backends may not wrap host memory */
    stem_attention_desc d;
    stem_config cfg;
    small_problem(&d, &cfg);
    stem_plan *plan = NULL;
    if (stem_plan_create(c, &d, &cfg, &plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    stem_status st = stem_context_destroy(c);
    if (st != STEM_ERR_INVALID_ARGUMENT || !strstr(stem_last_error(), "alive"))
        fail_msg("stem_context_destroy with a live plan and buffer returned %s (\"%s\"), "
                 "expected STEM_ERR_INVALID_ARGUMENT saying what is alive",
                 stem_status_name(st), stem_last_error());
    /* Nothing was destroyed: the buffer and the plan still work. */
    if (stem_buffer_write(b, 0, in, sizeof in) != STEM_OK ||
        stem_buffer_read(b, 0, out, sizeof out) != STEM_OK || memcmp(in, out, sizeof in) != 0)
        fail_msg("the buffer no longer round-trips after a refused stem_context_destroy: %s",
                 stem_last_error());
    stem_plan_info pi;
    stem_plan_info_init(&pi);
    if (stem_plan_get_info(plan, &pi) != STEM_OK || pi.num_q_blocks != 3)
        fail_msg("the plan no longer answers after a refused stem_context_destroy");
    stem_plan_destroy(plan);
    if (stem_context_destroy(c) != STEM_ERR_INVALID_ARGUMENT)
        fail_msg("stem_context_destroy with a live buffer must still refuse");
    stem_buffer_destroy(b);
    if (w) {
        if (stem_context_destroy(c) != STEM_ERR_INVALID_ARGUMENT)
            fail_msg("stem_context_destroy with a live wrapped buffer must refuse");
        stem_buffer_destroy(w);
    }
    /* A plan's own workspace (made by stem_prefill) is the plan's to free. */
    plan = NULL;
    if (stem_plan_create(c, &d, &cfg, &plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    const size_t qb = 2 * 40 * 64 * 4, kb = 40 * 64 * 4;
    stem_buffer *io = NULL;
    if (stem_buffer_create(c, 2 * qb + 2 * kb, &io) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    float *host = calloc(1, 2 * qb + 2 * kb);
    if (!host)
        fail_msg("out of memory");
    for (size_t i = 0; i < (2 * qb + 2 * kb) / 4; ++i)
        host[i] = (float)((i * 37) % 11) * 0.05f;
    st = stem_buffer_write(io, 0, host, 2 * qb + 2 * kb);
    free(host);
    if (st != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    const stem_tensor tq = stem_tensor_bhnd(io, 0, STEM_DTYPE_F32, 1, 2, 40, 64);
    const stem_tensor tk = stem_tensor_bhnd(io, qb, STEM_DTYPE_F32, 1, 1, 40, 64);
    const stem_tensor tv = stem_tensor_bhnd(io, qb + kb, STEM_DTYPE_F32, 1, 1, 40, 64);
    const stem_tensor to = stem_tensor_bhnd(io, qb + 2 * kb, STEM_DTYPE_F32, 1, 2, 40, 64);
    if (stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL) != STEM_OK ||
        stem_synchronize(c) != STEM_OK)
        fail_msg("stem_prefill: %s", stem_last_error());
    stem_buffer_destroy(io);
    if (stem_context_destroy(c) != STEM_ERR_INVALID_ARGUMENT)
        fail_msg("stem_context_destroy with a live plan (holding its workspace) must refuse");
    stem_plan_destroy(plan);
    st = stem_context_destroy(c);
    if (st != STEM_OK)
        fail_msg("stem_context_destroy after every child is gone: %s: %s", stem_status_name(st),
                 stem_last_error());
    expect_clear("stem_context_destroy");
}

/* The growth rule: a newer caller (larger struct_size) gets our fields and
 * keeps its own tail; its extra input fields are not read. */
#define TAIL 64
static void tail_fill(unsigned char *t) { memset(t, 0xA5, TAIL); }
static void tail_check(const unsigned char *t, const char *what)
{
    for (int i = 0; i < TAIL; ++i)
        if (t[i] != 0xA5)
            fail_msg("%s wrote byte %d past its own struct (the caller's newer field)", what, i);
}

static void abi_growth(conf_test *T, const conf_misuse *m)
{
    (void)m;
    stem_context *ctx = T->dev->ctx;
    struct {
        stem_plan_info info;
        unsigned char tail[TAIL];
    } pi;
    struct {
        stem_device_info info;
        unsigned char tail[TAIL];
    } di, dj;
    struct {
        stem_backend_info info;
        unsigned char tail[TAIL];
    } bi;
    struct {
        stem_attention_desc d;
        unsigned char tail[TAIL];
    } ad;
    struct {
        stem_config c;
        unsigned char tail[TAIL];
    } cf;
    struct {
        stem_context_desc d;
        unsigned char tail[TAIL];
    } cd;
    /* Outputs. */
    stem_device_info_init(&di.info);
    di.info.struct_size = sizeof di;
    tail_fill(di.tail);
    if (stem_context_get_device(ctx, &di.info) != STEM_OK)
        fail_msg("stem_context_get_device(newer struct): %s", stem_last_error());
    tail_check(di.tail, "stem_context_get_device");
    if (di.info.struct_size != sizeof di || strcmp(di.info.name, T->dev->info.name) != 0)
        fail_msg("stem_context_get_device(newer struct): struct_size %zu, name \"%s\"",
                 di.info.struct_size, di.info.name);
    stem_device_info_init(&dj.info);
    dj.info.struct_size = sizeof dj;
    tail_fill(dj.tail);
    if (stem_device_get_info(T->dev->global_index, &dj.info) != STEM_OK)
        fail_msg("stem_device_get_info(newer struct): %s", stem_last_error());
    tail_check(dj.tail, "stem_device_get_info");
    if (strcmp(dj.info.name, T->dev->info.name) != 0)
        fail_msg("stem_device_get_info(newer struct): name \"%s\"", dj.info.name);
    stem_backend_info_init(&bi.info);
    bi.info.struct_size = sizeof bi;
    tail_fill(bi.tail);
    if (stem_backend_query(T->dev->info.backend, &bi.info) != STEM_OK)
        fail_msg("stem_backend_query(newer struct): %s", stem_last_error());
    tail_check(bi.tail, "stem_backend_query");
    if (!bi.info.available || bi.info.backend != T->dev->info.backend)
        fail_msg("stem_backend_query(newer struct): not available");
    /* Inputs with a garbage tail. */
    stem_attention_desc d;
    stem_config c;
    small_problem(&d, &c);
    ad.d = d;
    ad.d.struct_size = sizeof ad;
    memset(ad.tail, 0xFF, TAIL);
    cf.c = c;
    cf.c.struct_size = sizeof cf;
    memset(cf.tail, 0xFF, TAIL);
    stem_plan *plan = NULL;
    if (stem_plan_create(ctx, &ad.d, &cf.c, &plan) != STEM_OK)
        fail_msg("stem_plan_create(newer desc and config): %s", stem_last_error());
    res_add_plan(&T->res, plan);
    stem_plan_info_init(&pi.info);
    pi.info.struct_size = sizeof pi;
    tail_fill(pi.tail);
    if (stem_plan_get_info(plan, &pi.info) != STEM_OK)
        fail_msg("stem_plan_get_info(newer struct): %s", stem_last_error());
    tail_check(pi.tail, "stem_plan_get_info");
    if (pi.info.struct_size != sizeof pi || pi.info.num_q_blocks != 3 || pi.info.k_start != 1 ||
        pi.info.dense)
        fail_msg("stem_plan_get_info(newer struct): nq %lld, k_start %d, dense %d",
                 (long long)pi.info.num_q_blocks, pi.info.k_start, pi.info.dense);
    stem_context_desc_init(&cd.d);
    cd.d.struct_size = sizeof cd;
    memset(cd.tail, 0xFF, TAIL);
    stem_context *c2 = open_ctx(T, &cd.d);
    res_add_context(&T->res, c2);
    /* An older caller than the first released form is refused. */
    stem_plan_info_init(&pi.info);
    pi.info.struct_size = offsetof(stem_plan_info, selector);
    if (stem_plan_get_info(plan, &pi.info) != STEM_ERR_VERSION_MISMATCH)
        fail_msg("stem_plan_get_info(struct_size short of the last field) must return "
                 "STEM_ERR_VERSION_MISMATCH");
}

static void abi_version(conf_test *T, const conf_misuse *m)
{
    (void)T;
    (void)m;
    if (STEM_VERSION != STEM_VERSION_MAJOR * 10000 + STEM_VERSION_MINOR * 100 + STEM_VERSION_PATCH)
        fail_msg("STEM_VERSION does not encode MAJOR.MINOR.PATCH");
    if (stem_version() != (uint32_t)STEM_VERSION)
        fail_msg("stem_version() = %u, the header says %d", stem_version(), STEM_VERSION);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", STEM_VERSION_MAJOR, STEM_VERSION_MINOR,
             STEM_VERSION_PATCH);
    if (strcmp(stem_version_string(), want) != 0)
        fail_msg("stem_version_string() = \"%s\", expected \"%s\"", stem_version_string(), want);
}

/* Review defect A11: the context keeps its own copy of cache_dir, for every
 * backend; the caller's string may go away right after the call. */
static int count_prefixed(const char *dir, const char *prefix)
{
    int n = 0;
#if defined(__linux__)
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
#else
    (void)dir;
    (void)prefix;
#endif
    return n;
}

static void remove_dir(const char *dir)
{
#if defined(__linux__)
    DIR *d = opendir(dir);
    if (d) {
        char path[1024];
        for (struct dirent *e = readdir(d); e; e = readdir(d)) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
#else
    (void)dir;
#endif
}

static void abi_cache_dir(conf_test *T, const conf_misuse *m)
{
    (void)m;
#if defined(__linux__)
    char dir[] = "/tmp/stem-abi-cache-XXXXXX";
    if (!mkdtemp(dir))
        fail_msg("mkdtemp failed");
    char *caller = res_alloc(&T->res, 4096);
    snprintf(caller, 4096, "%s", dir);
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.cache_dir = caller;
    cd.device = (int32_t)T->dev->global_index;
    stem_context *c = NULL;
    stem_status st = stem_context_create(&cd, &c);
    /* The caller's string changes right after the call. */
    snprintf(caller, 4096, "/nonexistent/stem-abi-cache");
    if (st != STEM_OK) {
        remove_dir(dir);
        fail_msg("stem_context_create(cache_dir): %s", stem_last_error());
    }
    stem_attention_desc d;
    stem_config cfg;
    small_problem(&d, &cfg);
    stem_plan *plan = NULL;
    st = stem_plan_create(c, &d, &cfg, &plan);
    stem_plan_destroy(plan);
    const stem_status st2 = stem_context_destroy(c);
    const stem_backend b = T->dev->info.backend;
    const int n = b == STEM_BACKEND_OPENCL   ? count_prefixed(dir, "stem-opencl-")
                  : b == STEM_BACKEND_VULKAN ? count_prefixed(dir, "stem-vulkan-")
                                             : 1;
    remove_dir(dir);
    if (st != STEM_OK || st2 != STEM_OK)
        fail_msg("plan or context destroy with a cache_dir: %s", stem_last_error());
    if (n < 1)
        fail_msg("%s wrote no kernel cache into cache_dir after the caller's string changed",
                 stem_backend_name(b));
#else
    (void)T;
#endif
}

int conf_add_abi_cases(conf_misuse *list, int cap)
{
    void (*const fn[AB_N])(conf_test *, const conf_misuse *) = {
        abi_log, abi_log_isolated, abi_cleared, abi_auto_cleared, abi_destroy_order,
        abi_growth, abi_version, abi_cache_dir};
    if (cap < AB_N)
        return 0;
    for (int a = 0; a < AB_N; ++a) {
        snprintf(list[a].name, sizeof list[a].name, "%s", ab_name[a]);
        list[a].fn = fn[a];
        list[a].a = a;
    }
    return AB_N;
}
