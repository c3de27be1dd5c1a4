/* Internal: the seam between the backend-neutral core (api/) and backends. */
#ifndef STEM_INTERNAL_H
#define STEM_INTERNAL_H

#include "stem.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Records the thread-local error message and returns status. */
stem_status stem_set_error(stem_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void stem_clear_error(void);

/* Every public call that returns stem_status starts with one of these: it
 * clears the thread's error message and makes the context's log callback
 * (or desc's, or none) the one stem_set_error reports to (level ERROR). */
void stem_enter(const stem_context *ctx); /* ctx may be NULL: no callback */
void stem_enter_log(stem_log_fn log, void *user);
/* The same for calls that return nothing (destroy): the message stays. */
void stem_enter_void(const stem_context *ctx);
/* Silence, then restore, error reports around an attempt that may fail
 * without failing the call (AUTO device fallback). */
void stem_log_mute(stem_log_fn *saved_log, void **saved_user);
void stem_log_unmute(stem_log_fn saved_log, void *saved_user);
/* One line to the context's log callback, if any (ctx NULL: the callback of
 * the call in progress). Backends use it to name the kernel variant chosen. */
void stem_log(const stem_context *ctx, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The growth rule: a caller's struct may be older (smaller) or newer
 * (larger) than ours. stem_struct_in copies the caller's fields that lie
 * inside both sizes over dst, which holds our defaults; stem_struct_out
 * writes only the fields inside the caller's struct_size. Both refuse a
 * struct_size below min_size, the size of the struct's first released form
 * (STEM_SIZE_THROUGH(type, its last field then)). */
#define STEM_SIZE_THROUGH(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
stem_status stem_struct_in(void *dst, size_t dst_size, const void *src, size_t min_size,
                           const char *fn, const char *what, const char *init);
stem_status stem_struct_out(void *dst, const void *src, size_t src_size, size_t min_size,
                            const char *fn, const char *what, const char *init);
/* The size each struct had in 0.2, where the growth rule starts. */
#define STEM_MIN_BACKEND_INFO STEM_SIZE_THROUGH(stem_backend_info, reason)
#define STEM_MIN_DEVICE_INFO STEM_SIZE_THROUGH(stem_device_info, detail)
#define STEM_MIN_CONTEXT_DESC STEM_SIZE_THROUGH(stem_context_desc, cache_dir)
#define STEM_MIN_CONFIG STEM_SIZE_THROUGH(stem_config, dense_layers)
#define STEM_MIN_ATTENTION_DESC STEM_SIZE_THROUGH(stem_attention_desc, layer_index)
#define STEM_MIN_PLAN_INFO STEM_SIZE_THROUGH(stem_plan_info, selector)
#define STEM_MIN_CALL_IO STEM_SIZE_THROUGH(stem_call_io, lse)
#define STEM_MIN_SEQS STEM_SIZE_THROUGH(stem_seqs, prompt_lens)

/* Backends this library knows (stem_backend values 0 .. COUNT-1); not
 * public, so a new backend does not change stem.h's constants. */
#define STEM_BACKEND_COUNT 4

/* STEM_ERR_VERSION_MISMATCH when a caller's struct is older (smaller) than
 * ours; `init` names the function that fills it. */
stem_status stem_check_struct_size(size_t have, size_t need, const char *fn, const char *what,
                                   const char *init);
#define CHECK_STRUCT_SIZE(ptr, need, fn, init)                                                 \
    do {                                                                                       \
        stem_status st_ = stem_check_struct_size((ptr)->struct_size, (need), (fn), #ptr, (init)); \
        if (st_ != STEM_OK)                                                                    \
            return st_;                                                                        \
    } while (0)

/* What a backend's probe reports: its devices, or why it has none. */
#define STEM_MAX_DEVICES_PER_BACKEND 16
typedef struct stem_probe_result {
    uint32_t device_count;
    stem_device_info devices[STEM_MAX_DEVICES_PER_BACKEND];
    char reason[256];
} stem_probe_result;

struct stem_plan;

/* What one stage call computes: the problem's geometry and the slice of it
 * this pass covers. The core builds it (stem_prefill cuts a large problem
 * into passes of batch entries and query heads); backends read sizes from
 * here, never from plan->desc, so a pass is never mistaken for the plan.
 * Tensors handed with a pass are views of the pass's slice. */
typedef struct stem_pass {
    int64_t batch;         /* batch entries of this pass */
    int64_t num_q_heads;   /* query heads of this pass */
    int64_t num_kv_heads;  /* their KV heads */
    int64_t q_len;         /* M: queries per (entry, head) */
    int64_t kv_len;        /* L: visible keys */
    int64_t q_offset;      /* P = L - M: absolute position of query 0 */
    int64_t row0;          /* absolute query block of row 0: floor(P / B) */
    int64_t n_rows;        /* rows of scores/index/count: ceil(L / B) - row0 */
    int64_t n_keys;        /* key blocks: ceil(L / B) */
    /* Optional per-call tensors (NULL when absent), sliced like the rest:
     * vstats_in f32 [batch, Hkv, 1, 2] (PROVIDED plans, scoring),
     * vstats_out the same shape (scoring), lse f32 [batch, Hq, M, 1] (attention). */
    const stem_tensor *vstats_in, *vstats_out, *lse;
} stem_pass;

/* Capabilities beyond a fresh prefill, declared in the ops table; the core
 * answers STEM_ERR_UNSUPPORTED with one shared message for what is missing. */
enum {
    STEM_CAP_Q_OFFSET = 1u << 0, /* q_len < kv_len (chunked / prefix-cached prefill) */
    STEM_CAP_VSTATS = 1u << 1,   /* vstats_in (PROVIDED) and vstats_out */
    STEM_CAP_LSE = 1u << 2,      /* lse output */
    /* Varlen plans (STEM_Q_PACKED with KV_BHND or KV_PACKED): the core runs
     * one single-sequence pass per sequence on views of the caller's tensors,
     * so a backend needs nothing beyond Q_OFFSET; declaring it says the
     * backend was checked with those views (conformance varlen_*). */
    STEM_CAP_VARLEN = 1u << 3,
    /* STEM_KV_PAGED: the core gathers each sequence's pages into workspace
     * (host memcpy for host-addressable buffers, else the copy_rects op). */
    STEM_CAP_PAGED = 1u << 4
};

/* One strided 2-D copy: rows of row_bytes from src + src_off + r * src_pitch
 * to dst + dst_off + r * dst_pitch (paged K/V gather). */
typedef struct stem_copy_rect {
    size_t src_off, dst_off;
    size_t rows, row_bytes;
    size_t src_pitch, dst_pitch;
} stem_copy_rect;

/* One table per backend, registered in api/registry.c. The core validates
 * every argument before calling in: tensors match the plan, lie inside
 * their buffers and belong to the plan's context. */
typedef struct stem_backend_ops {
    stem_backend kind;
    const char *name;
    /* Fills out; never fails hard (a backend with no device sets reason). */
    void (*probe)(stem_probe_result *out);
    stem_status (*context_init)(stem_context *ctx, uint32_t backend_index);
    void (*context_fini)(stem_context *ctx);
    /* Sets buf->impl (and buf->host when host-addressable). */
    stem_status (*buffer_alloc)(stem_context *ctx, stem_buffer *buf, size_t bytes);
    stem_status (*buffer_wrap_host)(stem_context *ctx, stem_buffer *buf, void *host, size_t bytes);
    /* Caller-owned native memory (see stem_buffer_wrap_native); the core
     * has checked handle != NULL and bytes > 0. NULL = unsupported. */
    stem_status (*buffer_wrap_native)(stem_context *ctx, stem_buffer *buf, void *handle,
                                      size_t offset, size_t bytes);
    /* Fills the backend's fields of h (backend is set); NULL = none. */
    void (*context_native)(const stem_context *ctx, stem_native_handles *h);
    void (*buffer_free)(stem_context *ctx, stem_buffer *buf);
    stem_status (*buffer_write)(stem_context *ctx, stem_buffer *buf, size_t offset,
                                const void *src, size_t bytes);
    stem_status (*buffer_read)(stem_context *ctx, stem_buffer *buf, size_t offset, void *dst,
                               size_t bytes);
    /* Optional per-plan state (compiled kernels, scratch); may be NULL. */
    stem_status (*plan_init)(struct stem_plan *plan);
    void (*plan_fini)(struct stem_plan *plan);
    /* Support check for head_dim, dtypes, block size: STEM_ERR_UNSUPPORTED + message. */
    stem_status (*plan_check)(const stem_context *ctx, const stem_attention_desc *desc,
                              const stem_config *cfg);
    /* Stages; pass (never NULL) says what to compute, see stem_pass. */
    stem_status (*score)(struct stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                         const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores);
    stem_status (*select)(struct stem_plan *plan, const stem_pass *pass,
                          const stem_tensor *scores, const stem_tensor *index,
                          const stem_tensor *count);
    stem_status (*attention)(struct stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                             const stem_tensor *k, const stem_tensor *v, const stem_tensor *index,
                             const stem_tensor *count, const stem_tensor *out);
    stem_status (*synchronize)(stem_context *ctx);
    unsigned caps; /* STEM_CAP_* */
    /* Queued device copies src -> dst (distinct buffers of ctx), in order
     * with the stages; NULL where every buffer is host memory (the core
     * copies itself). Needed for STEM_CAP_PAGED on device memory. */
    stem_status (*copy_rects)(stem_context *ctx, stem_buffer *dst, const stem_buffer *src,
                              const stem_copy_rect *rects, size_t count);
    /* Declared limits, checked by the core before plan_check (one message
     * for every backend): Q/K/V dtypes (bit 1 << stem_dtype) and head_dim,
     * a multiple of head_dim_step in [head_dim_min, head_dim_max]. */
    unsigned dtypes;
    int32_t head_dim_min, head_dim_max, head_dim_step;
} stem_backend_ops;

struct stem_context {
    const stem_backend_ops *ops;
    stem_context_desc desc;
    stem_device_info device;
    uint32_t backend_index;
    char *cache_dir; /* the core's copy of desc.cache_dir (desc.cache_dir points here) */
    size_t live_buffers; /* stem_context_destroy refuses while these are non-zero */
    size_t live_plans;
    void *impl; /* backend state */
};

struct stem_buffer {
    stem_context *ctx;
    size_t size;
    void *host;  /* host address when the backend's memory is host memory, else NULL */
    int owned;   /* made by stem_buffer_create (else the caller's: never freed) */
    void *impl;  /* backend handle */
};

/* A validated, resolved plan. Backends read these fields; `impl` is theirs. */
struct stem_plan {
    stem_context *ctx;
    stem_attention_desc desc;
    stem_config cfg;
    float scale;         /* resolved softmax scale */
    int64_t q_offset;    /* P = kv_len - q_len */
    int64_t row0;        /* floor(P / B): absolute query block of row 0 */
    int64_t n_rows;      /* selection rows: n_blocks - row0 */
    int64_t n_blocks;    /* key blocks nk = ceil(kv_len / B) */
    int64_t prompt_len;  /* resolved desc.prompt_len (>= kv_len) */
    int64_t n_prompt;    /* ceil(prompt_len / B): budget rows */
    int32_t group;       /* G = B / S */
    int dense;           /* every causal block is kept */
    int32_t k_start;
    int32_t *budget;     /* [n_prompt] top-k budget per ABSOLUTE row (before forced
                            blocks); rows of a call are budget[row0 ..] */
    double budget_density;
    size_t workspace_bytes;
    int64_t batch_per_pass;  /* stem_prefill slices: batch entries ... */
    int64_t heads_per_pass;  /* ... and query heads (a multiple or divisor of g) */
    /* Varlen plans (q_layout PACKED): the workspace holds selection scratch
     * [0, varlen_selection_bytes) for one sequence's pass, then (paged) K at
     * varlen_kv_offset and V after it, varlen_kv_bytes each. */
    size_t varlen_selection_bytes, varlen_kv_offset, varlen_kv_bytes;
    stem_buffer *workspace;  /* caller's or ours */
    size_t workspace_offset;
    int workspace_owned;
    void *impl;
};

/* XATTENTION and XATTENTION_STRICT share the block mass (docs/semantics.md section 3). */
static inline int stem_selector_is_xattention(stem_selector s)
{
    return s == STEM_SELECTOR_XATTENTION || s == STEM_SELECTOR_XATTENTION_STRICT;
}

/* Which form of the XAttention threshold rule a plan's rows follow (section 5):
 * 1 = only the diagonal forced and the running mass lagged by one block (the
 * official rule when the query rows start at key block 0); 0 = blocks 0 and I
 * forced, no lag (the strict rule, and the official rule with a query offset,
 * whose block 0 is not overwritten by the diagonal). */
static inline int stem_xattn_diag_only(const struct stem_plan *plan)
{
    /* Absolute block of the call's first query row (0 for a fresh prefill;
     * chunked XAttention calls are refused at plan creation for now). */
    const int64_t query_block_offset = plan->row0;
    return plan->cfg.selector == STEM_SELECTOR_XATTENTION && query_block_offset == 0;
}

/* Byte address of element (b,h,n,i) of a host-addressable tensor. */
static inline void *stem_tensor_host_ptr(const stem_tensor *t, int64_t b, int64_t h, int64_t n,
                                         int64_t i)
{
    return (char *)t->buffer->host + t->offset +
           (size_t)((b * t->strides[0] + h * t->strides[1] + n * t->strides[2] +
                     i * t->strides[3]) *
                    (int64_t)stem_dtype_size(t->dtype));
}

/* The whole plan as one pass (stem_score, stem_select, stem_attention). */
stem_pass stem_plan_whole_pass(const struct stem_plan *plan);

/* A plan for one sequence of a varlen call (api/plan.c): stem_plan_create
 * without entering a public call and without the INFO log. */
stem_status stem_plan_create_sequence(stem_context *ctx, const stem_attention_desc *desc,
                                      const stem_config *cfg, stem_plan **out);

/* Shared by the stages and the varlen path (api/stages.c). */
typedef struct stem_byte_range {
    const stem_buffer *buf;
    uint64_t lo, hi; /* [lo, hi) */
} stem_byte_range;
stem_status stem_check_tensor(const struct stem_plan *plan, const stem_tensor *t, const char *fn,
                              const char *name, const int64_t dims[4], unsigned dtype_mask,
                              stem_byte_range *range);
stem_status stem_check_disjoint(const char *fn, const stem_byte_range *a, const char *an,
                                const stem_byte_range *b, const char *bn);
/* PROVIDED statistics of `batch` entries: finite, std >= 0. */
/* The per-call option checks shared by the single and varlen prefill paths. */
stem_status stem_check_call_options(const struct stem_plan *plan, const char *fn,
                                    const stem_call_io *io);
stem_status stem_check_vstats_in(const struct stem_plan *plan, const stem_tensor *t,
                                 int64_t batch, const char *fn);
/* The validated core of stem_prefill_ex on a plan of layout BHND. */
stem_status stem_prefill_run(struct stem_plan *plan, const char *fn, const stem_tensor *q,
                             const stem_tensor *k, const stem_tensor *v, const stem_tensor *o,
                             const stem_call_io *io);
/* stem_prefill_ex on a varlen plan (api/varlen.c). */
stem_status stem_prefill_varlen(struct stem_plan *plan, const char *fn, const stem_tensor *q,
                                const stem_tensor *k, const stem_tensor *v, const stem_tensor *o,
                                const stem_call_io *io);

/* Budget schedule for a resolved plan (api/schedule.c). */
stem_status stem_schedule_build(struct stem_plan *plan);

/* Registry (api/registry.c). */
const stem_backend_ops *stem_backend_ops_get(stem_backend backend);
int stem_backend_disabled(stem_backend backend); /* STEM_DISABLE_<NAME>=1 */
/* The global device list without touching the error state: its length, and
 * entry `index` (returns 0 when there is none). */
uint32_t stem_registry_device_count(void);
int stem_registry_device(uint32_t index, stem_device_info *out);
/* Logs the resolved plan at INFO (api/errors.c; called by stem_plan_create). */
void stem_log_plan(const struct stem_plan *plan);

/* Backends compiled in. */
extern const stem_backend_ops stem_cpu_backend_ops;
#ifdef STEM_HAVE_CUDA
extern const stem_backend_ops stem_cuda_backend_ops;     /* backends/cuda */
#endif
#ifdef STEM_HAVE_OPENCL
extern const stem_backend_ops stem_opencl_backend_ops;   /* backends/opencl */
#endif
#ifdef STEM_HAVE_VULKAN
extern const stem_backend_ops stem_vulkan_backend_ops;   /* backends/vulkan */
#endif

/* Scalar conversions shared by host-side code. */
float stem_f16_to_f32(uint16_t h);
uint16_t stem_f32_to_f16(float f);
float stem_bf16_to_f32(uint16_t h);
uint16_t stem_f32_to_bf16(float f);

#endif /* STEM_INTERNAL_H */
