/*
 * Host allocation failure injection, without touching library code.
 *
 * This program defines malloc, calloc, realloc, free, aligned_alloc and
 * posix_memalign itself (glibc's real ones stay reachable as __libc_*), so
 * every allocation the shared libstem makes comes through here. Calls whose
 * return address lies in libstem's code are counted; with the countdown
 * armed at K the K-th of them fails. Allocations of other code (libc,
 * libgomp, this program) are never failed: libgomp aborts on a failed
 * allocation by design, and that is not libstem's to handle.
 *
 * For K = 1, 2, ... one full sequence runs on every device the test can open
 * (context, buffers, writes, two plans, score + select + attention,
 * prefill with the plan's own workspace, an XAttention prefill):
 *  - the first failing call must return STEM_ERR_OUT_OF_MEMORY (or the
 *    device variant) with a message, and only when an allocation failed;
 *    a failing stem_score, stem_select or stem_attention leaves its outputs
 *    as they were (stem_prefill may leave partial outputs: hardening.md);
 *  - with injection off, the same objects (the context, plans and buffers
 *    that were made) must finish the sequence and give bit for bit the
 *    results of a clean run: the failure left them usable;
 *  - after everything is destroyed, no allocation libstem made is live.
 * The loop ends at the first K that the whole sequence does not reach.
 *
 * Not built with sanitizers (they interpose the same functions).
 */
#define _GNU_SOURCE /* dl_iterate_phdr */
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device_filter.h"
#include "stem.h"
#include "stem_synth.h"

/* ------------------------------------------------------- the interposer */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

#define MAX_RANGES 8
static uintptr_t lib_lo[MAX_RANGES], lib_hi[MAX_RANGES];
static int lib_ranges;

static atomic_long countdown; /* > 0: fail the allocation that brings it to 0 */
static atomic_long lib_calls; /* libstem allocation calls since arming */
static atomic_long injected;  /* failures injected since arming */

/* Live libstem allocations: open addressing, guarded by a spin lock (the
 * library may allocate from several threads). */
#define LIVE_SLOTS (1u << 16)
static void *live[LIVE_SLOTS];
static long live_count;
static atomic_flag live_lock = ATOMIC_FLAG_INIT;

static void lock(void)
{
    while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire))
        ;
}
static void unlock(void) { atomic_flag_clear_explicit(&live_lock, memory_order_release); }

static size_t slot_of(const void *p) { return ((uintptr_t)p >> 4) * 2654435761u % LIVE_SLOTS; }

static void *const TOMB = (void *)(uintptr_t)1;

static void track(void *p)
{
    if (!p)
        return;
    lock();
    for (size_t i = slot_of(p), k = 0; k < LIVE_SLOTS; ++k, i = (i + 1) % LIVE_SLOTS)
        if (!live[i] || live[i] == TOMB) {
            live[i] = p;
            live_count++;
            break;
        }
    unlock();
}

static void untrack(void *p)
{
    if (!p)
        return;
    lock();
    if (live_count > 0)
        for (size_t i = slot_of(p), k = 0; k < LIVE_SLOTS && live[i]; ++k, i = (i + 1) % LIVE_SLOTS)
            if (live[i] == p) {
                live[i] = TOMB;
                live_count--;
                break;
            }
    unlock();
}

static int from_libstem(const void *ra)
{
    const uintptr_t a = (uintptr_t)ra;
    for (int i = 0; i < lib_ranges; ++i)
        if (a >= lib_lo[i] && a < lib_hi[i])
            return 1;
    return 0;
}

/* 1 when this libstem allocation must fail. */
static int inject(void)
{
    atomic_fetch_add(&lib_calls, 1);
    if (atomic_load(&countdown) <= 0)
        return 0;
    if (atomic_fetch_sub(&countdown, 1) == 1) {
        atomic_fetch_add(&injected, 1);
        return 1;
    }
    return 0;
}

void *malloc(size_t size)
{
    if (!from_libstem(__builtin_return_address(0)))
        return __libc_malloc(size);
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_malloc(size);
    track(p);
    return p;
}

void *calloc(size_t n, size_t size)
{
    if (!from_libstem(__builtin_return_address(0)))
        return __libc_calloc(n, size);
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_calloc(n, size);
    track(p);
    return p;
}

void *realloc(void *old, size_t size)
{
    if (!from_libstem(__builtin_return_address(0)))
        return __libc_realloc(old, size);
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    untrack(old);
    void *p = __libc_realloc(old, size);
    track(p ? p : old);
    return p;
}

void *aligned_alloc(size_t align, size_t size)
{
    if (!from_libstem(__builtin_return_address(0)))
        return __libc_memalign(align, size);
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_memalign(align, size);
    track(p);
    return p;
}

int posix_memalign(void **out, size_t align, size_t size)
{
    const int lib = from_libstem(__builtin_return_address(0));
    if (lib && inject())
        return ENOMEM;
    void *p = __libc_memalign(align, size);
    if (!p)
        return ENOMEM;
    if (lib)
        track(p);
    *out = p;
    return 0;
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

static int find_libstem(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libstem"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum && lib_ranges < MAX_RANGES; ++i) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            lib_lo[lib_ranges] = info->dlpi_addr + ph->p_vaddr;
            lib_hi[lib_ranges] = lib_lo[lib_ranges] + ph->p_memsz;
            lib_ranges++;
        }
    }
    return 1;
}

static long live_now(void)
{
    lock();
    const long n = live_count;
    unlock();
    return n;
}

/* ------------------------------------------------------- the sequence */

enum { NB = 1, HQ = 2, HKV = 1, NT = 300, HD = 64, BLK = 32 };
#define NBLK ((NT + BLK - 1) / BLK)
enum { B_Q, B_K, B_V, B_OUT, B_SCORES, B_INDEX, B_COUNT, B_OUT2, B_OUT3, B_N };

static float *q_in, *k_in, *v_in;

typedef struct run {
    stem_context *ctx;
    stem_buffer *buf[B_N];
    int written;
    stem_plan *plan, *xplan;
    float out_a[NB * HQ * NT * HD], out_b[NB * HQ * NT * HD], out_c[NB * HQ * NT * HD];
    int32_t index[NB * HQ * NBLK * NBLK], count[NB * HQ * NBLK];
} run;

static size_t buf_bytes(int i)
{
    switch (i) {
    case B_K:
    case B_V: return (size_t)NB * HKV * NT * HD * 4;
    case B_SCORES:
    case B_INDEX: return (size_t)NB * HQ * NBLK * NBLK * 4;
    case B_COUNT: return (size_t)NB * HQ * NBLK * 4;
    default: return (size_t)NB * HQ * NT * HD * 4;
    }
}

/* Output images before a stage (injection off while reading them). */
static unsigned char snap_a[NB * HQ * NT * HD * 4], snap_b[NB * HQ * NT * HD * 4];
static size_t snap_a_size, snap_b_size;
static int stage_wrote_on_failure;

static void snapshot(stem_buffer *a, stem_buffer *b)
{
    const long saved = atomic_exchange(&countdown, 0);
    snap_a_size = stem_buffer_size(a);
    snap_b_size = b ? stem_buffer_size(b) : 0;
    if (stem_buffer_read(a, 0, snap_a, snap_a_size) != STEM_OK ||
        (b && stem_buffer_read(b, 0, snap_b, snap_b_size) != STEM_OK))
        snap_a_size = snap_b_size = 0;
    atomic_store(&countdown, saved);
}

/* The failed stage's message: the reads below clear stem_last_error(). */
static char stage_msg[1024];
static const char *failure_message(void)
{
    return stage_msg[0] ? stage_msg : stem_last_error();
}

/* After a failed stage: its outputs must equal the snapshot. */
static stem_status untouched(stem_buffer *a, stem_buffer *b, stem_status st, const char **what)
{
    static unsigned char now_a[sizeof snap_a], now_b[sizeof snap_b];
    snprintf(stage_msg, sizeof stage_msg, "%s", stem_last_error());
    const long saved = atomic_exchange(&countdown, 0);
    if (snap_a_size &&
        (stem_buffer_read(a, 0, now_a, snap_a_size) != STEM_OK ||
         memcmp(now_a, snap_a, snap_a_size) != 0 ||
         (b && (stem_buffer_read(b, 0, now_b, snap_b_size) != STEM_OK ||
                memcmp(now_b, snap_b, snap_b_size) != 0)))) {
        stage_wrote_on_failure = 1;
        printf("  %s failed but changed its output\n", *what);
    }
    atomic_store(&countdown, saved);
    return st;
}

/* Runs (or finishes) the sequence; returns the first failing call's status
 * and names it in *what. Objects already made are reused. */
static stem_status sequence(run *r, int32_t device, const char **what)
{
    stem_status st;
    if (!r->ctx) {
        stem_context_desc cd;
        stem_context_desc_init(&cd);
        cd.device = device;
        cd.num_threads = 2;
        *what = "stem_context_create";
        if ((st = stem_context_create(&cd, &r->ctx)) != STEM_OK)
            return st;
    }
    for (int i = 0; i < B_N; ++i)
        if (!r->buf[i]) {
            *what = "stem_buffer_create";
            if ((st = stem_buffer_create(r->ctx, buf_bytes(i), &r->buf[i])) != STEM_OK)
                return st;
        }
    if (!r->written) {
        *what = "stem_buffer_write";
        if ((st = stem_buffer_write(r->buf[B_Q], 0, q_in, buf_bytes(B_Q))) != STEM_OK ||
            (st = stem_buffer_write(r->buf[B_K], 0, k_in, buf_bytes(B_K))) != STEM_OK ||
            (st = stem_buffer_write(r->buf[B_V], 0, v_in, buf_bytes(B_V))) != STEM_OK)
            return st;
        r->written = 1;
    }
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.batch = NB;
    d.num_q_heads = HQ;
    d.num_kv_heads = HKV;
    d.q_len = d.kv_len = NT;
    d.head_dim = HD;
    stem_config c;
    stem_config_init(&c);
    c.block_size = BLK;
    c.k_start = 3;
    c.sink_blocks = 1;
    c.local_blocks = 1;
    if (!r->plan) {
        *what = "stem_plan_create";
        if ((st = stem_plan_create(r->ctx, &d, &c, &r->plan)) != STEM_OK)
            return st;
    }
    if (!r->xplan) {
        c.selector = STEM_SELECTOR_XATTENTION;
        *what = "stem_plan_create(xattention)";
        if ((st = stem_plan_create(r->ctx, &d, &c, &r->xplan)) != STEM_OK)
            return st;
    }
    const stem_tensor tq = stem_tensor_bhnd(r->buf[B_Q], 0, STEM_DTYPE_F32, NB, HQ, NT, HD);
    const stem_tensor tk = stem_tensor_bhnd(r->buf[B_K], 0, STEM_DTYPE_F32, NB, HKV, NT, HD);
    const stem_tensor tv = stem_tensor_bhnd(r->buf[B_V], 0, STEM_DTYPE_F32, NB, HKV, NT, HD);
    const stem_tensor ts =
        stem_tensor_bhnd(r->buf[B_SCORES], 0, STEM_DTYPE_F32, NB, HQ, NBLK, NBLK);
    const stem_tensor ti = stem_tensor_bhnd(r->buf[B_INDEX], 0, STEM_DTYPE_I32, NB, HQ, NBLK, NBLK);
    const stem_tensor tc = stem_tensor_bhnd(r->buf[B_COUNT], 0, STEM_DTYPE_I32, NB, HQ, NBLK, 1);
    const stem_tensor to = stem_tensor_bhnd(r->buf[B_OUT], 0, STEM_DTYPE_F32, NB, HQ, NT, HD);
    const stem_tensor to2 = stem_tensor_bhnd(r->buf[B_OUT2], 0, STEM_DTYPE_F32, NB, HQ, NT, HD);
    const stem_tensor to3 = stem_tensor_bhnd(r->buf[B_OUT3], 0, STEM_DTYPE_F32, NB, HQ, NT, HD);
    /* A single stage that fails must leave its outputs as they were. */
    *what = "stem_score";
    snapshot(r->buf[B_SCORES], NULL);
    if ((st = stem_score(r->plan, &tq, &tk, &tv, &ts)) != STEM_OK)
        return untouched(r->buf[B_SCORES], NULL, st, what);
    *what = "stem_select";
    snapshot(r->buf[B_INDEX], r->buf[B_COUNT]);
    if ((st = stem_select(r->plan, &ts, &ti, &tc)) != STEM_OK)
        return untouched(r->buf[B_INDEX], r->buf[B_COUNT], st, what);
    *what = "stem_attention";
    snapshot(r->buf[B_OUT], NULL);
    if ((st = stem_attention(r->plan, &tq, &tk, &tv, &ti, &tc, &to)) != STEM_OK)
        return untouched(r->buf[B_OUT], NULL, st, what);
    *what = "stem_prefill";
    if ((st = stem_prefill(r->plan, &tq, &tk, &tv, &to2, NULL, NULL, NULL)) != STEM_OK)
        return st;
    *what = "stem_prefill(xattention)";
    if ((st = stem_prefill(r->xplan, &tq, &tk, &tv, &to3, NULL, NULL, NULL)) != STEM_OK)
        return st;
    *what = "stem_synchronize";
    if ((st = stem_synchronize(r->ctx)) != STEM_OK)
        return st;
    *what = "stem_buffer_read";
    if ((st = stem_buffer_read(r->buf[B_OUT], 0, r->out_a, sizeof r->out_a)) != STEM_OK ||
        (st = stem_buffer_read(r->buf[B_OUT2], 0, r->out_b, sizeof r->out_b)) != STEM_OK ||
        (st = stem_buffer_read(r->buf[B_OUT3], 0, r->out_c, sizeof r->out_c)) != STEM_OK ||
        (st = stem_buffer_read(r->buf[B_INDEX], 0, r->index, sizeof r->index)) != STEM_OK ||
        (st = stem_buffer_read(r->buf[B_COUNT], 0, r->count, sizeof r->count)) != STEM_OK)
        return st;
    return STEM_OK;
}

static void teardown(run *r)
{
    stem_plan_destroy(r->plan);
    stem_plan_destroy(r->xplan);
    for (int i = 0; i < B_N; ++i)
        stem_buffer_destroy(r->buf[i]);
    stem_context_destroy(r->ctx);
    r->ctx = NULL;
    r->plan = r->xplan = NULL;
    memset(r->buf, 0, sizeof r->buf);
    r->written = 0;
}

static int same_results(const run *a, const run *b)
{
    return memcmp(a->out_a, b->out_a, sizeof a->out_a) == 0 &&
           memcmp(a->out_b, b->out_b, sizeof a->out_b) == 0 &&
           memcmp(a->out_c, b->out_c, sizeof a->out_c) == 0 &&
           memcmp(a->index, b->index, sizeof a->index) == 0 &&
           memcmp(a->count, b->count, sizeof a->count) == 0;
}

static void arm(long k)
{
    atomic_store(&lib_calls, 0);
    atomic_store(&injected, 0);
    atomic_store(&countdown, k);
    stage_msg[0] = '\0';
}

static void disarm(void) { atomic_store(&countdown, 0); }

/* The injection loop on one device; returns the number of failures. */
static int test_device(int32_t device, const char *name)
{
    static run golden, r;
    const char *what = "";
    int failures = 0;
    memset(&golden, 0, sizeof golden);
    stem_status st = sequence(&golden, device, &what);
    if (st != STEM_OK) {
        printf("FAIL %s: clean run: %s returned %s: %s\n", name, what, stem_status_name(st),
               stem_last_error());
        return 1;
    }
    teardown(&golden); /* its results stay */
    if (live_now() != 0) {
        printf("FAIL %s: %ld libstem allocations live after a clean run\n", name, live_now());
        return 1;
    }
    /* Emulated GPU devices build kernels per context: bound the loop's
     * time there (STEM_FAILINJECT_SECONDS, default 300) and say so. */
    const char *budget_env = getenv("STEM_FAILINJECT_SECONDS");
    const double budget = budget_env && *budget_env ? atof(budget_env) : 300.0;
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    long k = 1, sites = 0;
    for (;; ++k) {
        clock_gettime(CLOCK_MONOTONIC, &ts1);
        if ((double)(ts1.tv_sec - ts0.tv_sec) > budget) {
            printf("note %s: stopped at K=%ld after %.0f s (STEM_FAILINJECT_SECONDS); later "
                   "allocation sites not exercised\n",
                   name, k, budget);
            sites = -1;
            break;
        }
        memset(&r, 0, sizeof r);
        arm(k);
        what = "";
        st = sequence(&r, device, &what);
        const long hit = atomic_load(&injected), calls = atomic_load(&lib_calls);
        disarm();
        if (!hit) {
            if (st != STEM_OK) {
                printf("FAIL %s: K=%ld: %s returned %s without an injected failure: %s\n", name,
                       k, what, stem_status_name(st), failure_message());
                failures++;
            }
            teardown(&r);
            sites = calls;
            break;
        }
        if (stage_wrote_on_failure) {
            printf("FAIL %s: K=%ld: %s failed and wrote its output\n", name, k, what);
            stage_wrote_on_failure = 0;
            failures++;
        } else if (st == STEM_OK) {
            /* The library coped without the allocation: fine if results hold. */
        } else if (st != STEM_ERR_OUT_OF_MEMORY && st != STEM_ERR_DEVICE_OUT_OF_MEMORY) {
            printf("FAIL %s: K=%ld: %s returned %s, expected STEM_ERR_OUT_OF_MEMORY: %s\n", name,
                   k, what, stem_status_name(st), failure_message());
            failures++;
        } else if (!failure_message()[0]) {
            printf("FAIL %s: K=%ld: %s failed without a message\n", name, k, what);
            failures++;
        } else if (getenv("STEM_TEST_VERBOSE")) {
            printf("  K=%ld: %s -> %s: %s\n", k, what, stem_status_name(st), failure_message());
        }
        /* The same objects, injection off: must finish and agree. */
        const char *what2 = "";
        st = sequence(&r, device, &what2);
        if (st != STEM_OK) {
            printf("FAIL %s: K=%ld: after the failure in %s, %s returned %s: %s\n", name, k, what,
                   what2, stem_status_name(st), stem_last_error());
            failures++;
        } else if (!same_results(&r, &golden)) {
            printf("FAIL %s: K=%ld: after the failure in %s, results differ from a clean run\n",
                   name, k, what);
            failures++;
        }
        teardown(&r);
        if (live_now() != 0) {
            printf("FAIL %s: K=%ld: %ld libstem allocations leaked after the failure in %s\n",
                   name, k, live_now(), what);
            failures++;
            break; /* counts only grow from here */
        }
        if (failures > 20)
            break;
    }
    if (failures)
        printf("FAIL %s: %d failures, stopped at K=%ld\n", name, failures, k);
    else if (sites >= 0)
        printf("ok   %s: %ld libstem allocations per sequence, each failed once (K = 1..%ld)\n",
               name, sites, k - 1);
    return failures;
}

int main(void)
{
    dl_iterate_phdr(find_libstem, NULL);
    if (lib_ranges == 0) {
        printf("FAIL: libstem's code not found among the loaded objects\n");
        return 1;
    }
    const size_t nq = (size_t)NB * HQ * NT * HD, nkv = (size_t)NB * HKV * NT * HD;
    q_in = __libc_malloc(nq * 4);
    k_in = __libc_malloc(nkv * 4);
    v_in = __libc_malloc(nkv * 4);
    if (!q_in || !k_in || !v_in)
        return 2;
    stem_synth_qkv(STEM_SYNTH_STRUCTURED, 7, NB, HQ, HKV, NT, HD, q_in, k_in, v_in);

    uint32_t count = 0;
    stem_device_count(&count);
    int failures = 0;
    for (uint32_t i = 0; i < count; ++i) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) != STEM_OK || !hardening_device_selected(&info))
            continue;
        char name[300];
        snprintf(name, sizeof name, "%s #%u (%s)", stem_backend_name(info.backend),
                 info.backend_index, info.name);
        failures += test_device((int32_t)i, name);
    }
    __libc_free(q_in);
    __libc_free(k_in);
    __libc_free(v_in);
    printf("failure injection: %s\n", failures ? "FAILED" : "passed");
    return failures != 0;
}
