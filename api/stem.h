/*
 * libstem: Stem sparse prefill attention behind one backend-neutral C API.
 *
 * Pipeline: stem_score (block logits) -> stem_select (per-row key-block
 * lists) -> stem_attention (exact block-sparse causal attention), or
 * stem_prefill for all three. See docs/semantics.md for the exact formulas.
 *
 * Conventions
 *  - Every fallible call returns stem_status; STEM_OK is 0. On failure
 *    stem_last_error() (thread-local) holds a readable message, and nothing
 *    the caller owns has been written. Every call that returns stem_status
 *    clears that message first, so after STEM_OK it reads "".
 *  - The library never aborts, exits or prints. With a log callback
 *    (stem_context_desc.log) it reports what it decided (device, plan
 *    shape, kernel variants) and every failure of a call on that context.
 *  - A context is used by one thread at a time; distinct contexts are
 *    independent. Stages are asynchronous on the CUDA, OpenCL and Vulkan
 *    backends (CPU returns when the work is done; Vulkan stages that touch
 *    wrapped host memory too): stem_synchronize waits;
 *    stem_buffer_read/write are blocking.
 *  - Lifetimes: plans and buffers belong to the context that made them and
 *    are destroyed before it (stem_context_destroy refuses while any lives).
 *  - CUDA: every call makes libstem's context current for its duration and
 *    restores the caller's current context before returning.
 *
 * Growth rule (ABI)
 *  - Every struct the caller fills or the library fills for the caller
 *    starts with size_t struct_size and has a stem_..._init() that sets
 *    struct_size and the defaults: call it, then change the fields you need.
 *  - New fields are only ever appended. The library reads (and writes) only
 *    the fields that lie inside the caller's struct_size, so a caller built
 *    against an older stem.h gets the defaults for the newer fields.
 *  - Limit until 1.0: stem_..._init() writes the whole struct of the library
 *    it runs in, so it is safe only with the header that library was built
 *    from. In 0.x every minor version has its own soname (README), so a
 *    program never meets a library with larger structs; before 1.0 the
 *    _init functions will take the caller's size.
 *  - stem_tensor, a small view passed by pointer, has no struct_size: it
 *    carries flags and reserved words instead, which must be zero today
 *    (zero-initialise it or use the constructors). Enums may gain values.
 *  - Versioning and what may change in 0.x: README.md, "Versioning and ABI".
 */
#ifndef STEM_H
#define STEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(STEM_STATIC_DEFINE)
#define STEM_API
#elif defined(_WIN32)
#ifdef STEM_BUILDING_LIBRARY
#define STEM_API __declspec(dllexport)
#else
#define STEM_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define STEM_API __attribute__((visibility("default")))
#else
#define STEM_API
#endif

#define STEM_VERSION_MAJOR 0
#define STEM_VERSION_MINOR 3
#define STEM_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, for compile-time comparisons. */
#define STEM_VERSION (STEM_VERSION_MAJOR * 10000 + STEM_VERSION_MINOR * 100 + STEM_VERSION_PATCH)

/* ------------------------------------------------------------------ status */

typedef enum stem_status {
    STEM_OK = 0,
    STEM_ERR_INVALID_ARGUMENT = 1,     /* NULL pointer, bad dims/strides/offsets, bad config */
    STEM_ERR_UNSUPPORTED = 2,          /* valid request this backend/build cannot run */
    STEM_ERR_OUT_OF_MEMORY = 3,        /* host allocation failed */
    STEM_ERR_DEVICE_OUT_OF_MEMORY = 4, /* device allocation failed */
    STEM_ERR_BACKEND_UNAVAILABLE = 5,  /* backend not compiled in, disabled or without device */
    STEM_ERR_KERNEL_BUILD = 6,         /* a kernel failed to build (log in the message) */
    STEM_ERR_DEVICE_LOST = 7,
    STEM_ERR_BACKEND_API = 8,          /* a runtime call failed (code in the message) */
    STEM_ERR_VERSION_MISMATCH = 9,     /* struct_size smaller than this library knows */
    STEM_ERR_INTERNAL = 10
} stem_status;

/* Stable upper-case name ("STEM_ERR_INVALID_ARGUMENT"); never NULL. */
STEM_API const char *stem_status_name(stem_status status);
/* Detail of the last failure on this thread ("" if none); never NULL. */
STEM_API const char *stem_last_error(void);
/* "0.3.0": the library actually loaded (compare with STEM_VERSION_* to
 * detect a header/library mismatch). */
STEM_API const char *stem_version_string(void);
/* The same as a number, STEM_VERSION's encoding. */
STEM_API uint32_t stem_version(void);

/* ----------------------------------------------------------------- devices */

/* Open: later versions may add backends. Values are dense from 0, and
 * stem_backend_name() returns "unknown" past the last one this library
 * knows, so a loop can list them all. */
typedef enum stem_backend {
    STEM_BACKEND_CPU = 0,
    STEM_BACKEND_CUDA = 1,
    STEM_BACKEND_OPENCL = 2,
    STEM_BACKEND_VULKAN = 3
} stem_backend;

/* "cpu", "cuda", "opencl", "vulkan"; "unknown" otherwise. */
STEM_API const char *stem_backend_name(stem_backend backend);

typedef struct stem_backend_info {
    size_t struct_size;
    stem_backend backend;
    int compiled;          /* built into this library */
    int available;         /* at least one usable device */
    uint32_t device_count;
    char reason[256];      /* why unavailable ("" when available) */
} stem_backend_info;
STEM_API void stem_backend_info_init(stem_backend_info *info);
STEM_API stem_status stem_backend_query(stem_backend backend, stem_backend_info *info);

typedef struct stem_device_info {
    size_t struct_size;
    stem_backend backend;
    uint32_t backend_index;  /* index among this backend's devices */
    int is_gpu;
    uint64_t memory_bytes;   /* 0 if unknown */
    uint32_t compute_units;  /* cores / SMs / compute units */
    char name[256];
    char detail[256];        /* e.g. "isa=avx2 threads=2" or driver version */
} stem_device_info;
STEM_API void stem_device_info_init(stem_device_info *info);

/* Global device list: GPU backends first, the CPU last. Never fails hard:
 * a backend without devices just contributes none (see stem_backend_query). */
STEM_API stem_status stem_device_count(uint32_t *count);
STEM_API stem_status stem_device_get_info(uint32_t index, stem_device_info *info);

/* ---------------------------------------------------------------- contexts */

typedef struct stem_context stem_context;
typedef struct stem_buffer stem_buffer;
typedef struct stem_plan stem_plan;

#define STEM_DEVICE_AUTO (-1) /* best real GPU, else the CPU backend, else an emulated GPU */

/* Log levels passed to stem_log_fn (smaller is more severe). */
#define STEM_LOG_ERROR 1 /* a call on the context failed: the stem_last_error() text */
#define STEM_LOG_WARN 2  /* a fallback was taken (e.g. a device that failed to open) */
#define STEM_LOG_INFO 3  /* a decision: device chosen, plan shape, budget, kernel variant */
#define STEM_LOG_DEBUG 4 /* details for developers */

/* Called on the thread that made the call, with a complete line (no
 * newline); message is valid only during the call. The callback may read
 * stem_last_error() but must not call other libstem functions. */
typedef void (*stem_log_fn)(void *user, int level, const char *message);

typedef struct stem_context_desc {
    size_t struct_size;
    int32_t device;        /* global index from stem_device_count, or STEM_DEVICE_AUTO */
    int32_t num_threads;   /* CPU backend: 0 = OpenMP default (or STEM_CPU_THREADS) */
    stem_log_fn log;       /* optional; the library prints nothing without it */
    void *log_user;
    /* Optional native queue to run on instead of the context's own: a
     * CUstream (CUDA, of the device's primary context; CU_STREAM_LEGACY,
     * (void *)1, for the legacy default stream) or cl_command_queue
     * (OpenCL, same device; the context then uses that queue's cl_context)
     * or a stem_vulkan_queue * (Vulkan: the caller's VkDevice and queue);
     * NULL = own. The caller keeps the queue alive until
     * stem_context_destroy; libstem never destroys it
     * and waits on it only in stem_synchronize and stem_buffer_read/write
     * (CUDA devices without memory pools also when freeing memory of its
     * own: buffers, plans). */
    void *native_queue;
    /* Optional directory for compiled kernel caches (OpenCL program binaries,
     * Vulkan pipeline cache); copied at create time; NULL = no disk cache. */
    const char *cache_dir;
} stem_context_desc;
STEM_API void stem_context_desc_init(stem_context_desc *desc);

/* Vulkan: what stem_context_desc.native_queue points to (read during
 * stem_context_create only). libstem then runs on the caller's VkDevice and
 * submits to `queue`; the handles stay the caller's and are never destroyed.
 * The queue is externally synchronized (Vulkan's rule): the caller does not
 * submit to it from another thread while a libstem call runs. Every libstem
 * submission starts with a full memory barrier, so it sees the caller's
 * earlier work on the queue; the caller's later work needs its own barrier.
 * The cooperative-matrix kernels run only where `flags` says the caller
 * enabled what they need: STEM_VULKAN_QUEUE_COOP_KHR means the device has
 * VK_KHR_cooperative_matrix enabled with the features cooperativeMatrix,
 * shaderFloat16, storageBuffer16BitAccess and vulkanMemoryModel;
 * STEM_VULKAN_QUEUE_COOP_NV the same with VK_NV_cooperative_matrix;
 * STEM_VULKAN_QUEUE_BF16 (with COOP_KHR) VK_KHR_shader_bfloat16 with
 * shaderBFloat16Type and shaderBFloat16CooperativeMatrix. */
typedef struct stem_vulkan_queue {
    size_t struct_size;
    void *instance;        /* VkInstance */
    void *physical_device; /* VkPhysicalDevice: the context's device (desc.device) */
    void *device;          /* VkDevice made by the caller from physical_device */
    void *queue;           /* VkQueue of device, in a family with compute */
    uint32_t queue_family;
    uint32_t flags;        /* STEM_VULKAN_QUEUE_* */
} stem_vulkan_queue;
#define STEM_VULKAN_QUEUE_COOP_KHR 1u
#define STEM_VULKAN_QUEUE_COOP_NV 2u
#define STEM_VULKAN_QUEUE_BF16 4u
STEM_API void stem_vulkan_queue_init(stem_vulkan_queue *queue);

/* desc may be NULL (defaults). */
STEM_API stem_status stem_context_create(const stem_context_desc *desc, stem_context **out);
/* Destroy every plan and buffer of the context first: while any is alive
 * this returns STEM_ERR_INVALID_ARGUMENT and destroys nothing. NULL is a
 * no-op (STEM_OK). */
STEM_API stem_status stem_context_destroy(stem_context *ctx);
STEM_API stem_status stem_context_get_device(const stem_context *ctx, stem_device_info *info);
/* Waits for all work queued on the context. */
STEM_API stem_status stem_synchronize(stem_context *ctx);

/* The native objects a context runs on, so a caller can make memory for
 * stem_buffer_wrap_native and order its own work against libstem's. The
 * handles stay owned by libstem (valid until stem_context_destroy). */
typedef struct stem_native_handles {
    size_t struct_size;
    stem_backend backend;
    void *context;         /* CUDA: CUcontext (the device's primary context);
                              OpenCL: cl_context; Vulkan: VkDevice; CPU: NULL */
    void *queue;           /* CUstream; cl_command_queue; VkQueue; CPU: NULL */
    void *device;          /* CUDA: CUdevice (an int, cast); OpenCL: cl_device_id;
                              Vulkan: VkPhysicalDevice; CPU: NULL */
    void *instance;        /* Vulkan: VkInstance; else NULL */
    uint32_t queue_family; /* Vulkan: the queue's family index; else 0 */
} stem_native_handles;
STEM_API void stem_native_handles_init(stem_native_handles *handles);
STEM_API stem_status stem_context_get_native(const stem_context *ctx,
                                             stem_native_handles *handles);

/* ----------------------------------------------------------------- buffers */

/* Library-owned memory on the context's device. */
STEM_API stem_status stem_buffer_create(stem_context *ctx, size_t bytes, stem_buffer **out);
/* Caller-owned host memory, used in place where the device can (CPU); the
 * caller keeps it alive until stem_buffer_destroy. A GPU backend that cannot
 * address host memory returns STEM_ERR_UNSUPPORTED (use stem_buffer_create). */
STEM_API stem_status stem_buffer_wrap_host(stem_context *ctx, void *host, size_t bytes,
                                           stem_buffer **out);
/* Caller-owned device memory, used in place (zero copy). handle is, per
 * backend of ctx:
 *   CPU     a host pointer (as stem_buffer_wrap_host)
 *   CUDA    a CUdeviceptr cast to void *, allocated on the context's
 *           device in its primary context (where libstem runs, and where
 *           the CUDA runtime, PyTorch and CuPy allocate)
 *   OpenCL  a cl_mem of the context's cl_context (stem_context_get_native);
 *           libstem holds a reference (clRetainMemObject) until destroy
 *   Vulkan  a VkBuffer created on the context's VkDevice
 *           (stem_context_get_native) with usage STORAGE_BUFFER |
 *           TRANSFER_SRC | TRANSFER_DST, bound to memory, at least
 *           offset + bytes rounded up to 16 bytes long
 * The buffer is [offset, offset + bytes) of that memory. Vulkan needs
 * offset to be a multiple of 16, OpenCL (offset > 0: a sub-buffer) of the
 * device's base address alignment; CUDA takes any offset (16-byte aligned
 * tensors get the tensor-core kernels). Ownership: the caller keeps the
 * memory alive until stem_buffer_destroy; libstem never frees it, never
 * zero-fills it and never waits on a queue to create or destroy it. Work on
 * the memory is ordered by the context's queue (native_queue when given):
 * the caller orders its own accesses against that queue. libstem checks
 * what the runtime lets it (CUDA: the pointer's device and allocation
 * range; OpenCL: the object's type, context and size); a VkBuffer cannot
 * be checked. */
STEM_API stem_status stem_buffer_wrap_native(stem_context *ctx, void *handle, size_t offset,
                                             size_t bytes, stem_buffer **out);
/* Before its context is destroyed. Stages still queued on the buffer are
 * not disturbed: library-owned memory is released once they are done
 * (CPU stages have finished on return; Vulkan waits for its queued work
 * first; OpenCL and CUDA release in queue order), and wrapped memory is
 * never released, so the caller keeps it alive until the queued work is
 * done. NULL is a no-op. */
STEM_API void stem_buffer_destroy(stem_buffer *buf);
STEM_API size_t stem_buffer_size(const stem_buffer *buf);
/* Blocking copies; [offset, offset + bytes) must lie inside the buffer. */
STEM_API stem_status stem_buffer_write(stem_buffer *buf, size_t offset, const void *src,
                                       size_t bytes);
STEM_API stem_status stem_buffer_read(stem_buffer *buf, size_t offset, void *dst, size_t bytes);

/* ----------------------------------------------------------------- tensors */

typedef enum stem_dtype {
    STEM_DTYPE_F32 = 0,
    STEM_DTYPE_F16 = 1,
    STEM_DTYPE_BF16 = 2,
    STEM_DTYPE_I32 = 3
} stem_dtype;

STEM_API size_t stem_dtype_size(stem_dtype dtype); /* 0 for an unknown dtype */
STEM_API const char *stem_dtype_name(stem_dtype dtype);

/* Host-side conversion of count elements between f32, f16 and bf16 (round
 * to nearest even, NaN kept NaN); src and dst may be the same array when
 * the element sizes are equal or when converting in place (either direction). */
STEM_API stem_status stem_convert(const void *src, stem_dtype src_dtype, void *dst,
                                  stem_dtype dst_dtype, size_t count);

/* A strided 4-D view of a buffer. Logical dims are always [B, H, N, d]
 * (batch, heads, tokens, head_dim); strides are in elements, so BHND, BNHD
 * and padded layouts all fit. Element (b,h,n,i) lives at byte
 * offset + (b*strides[0] + h*strides[1] + n*strides[2] + i*strides[3]) * size.
 * Zero-initialise it (stem_tensor t = {0}, memset) or use the constructors:
 * flags and the reserved words must be zero, or a stage returns
 * STEM_ERR_INVALID_ARGUMENT. They leave room for later per-tensor
 * information (scales, layout tags) without changing the struct's size. */
typedef struct stem_tensor {
    stem_buffer *buffer;
    size_t offset; /* bytes */
    stem_dtype dtype;
    int64_t dims[4];
    int64_t strides[4];
    uint32_t flags;       /* none defined yet: must be 0 */
    uint32_t reserved32;  /* must be 0 */
    uint64_t reserved[4]; /* must be 0 */
} stem_tensor;

/* Contiguous [B, H, N, d] (BHND) and [B, N, H, d] (BNHD) views. */
STEM_API stem_tensor stem_tensor_bhnd(stem_buffer *buf, size_t offset, stem_dtype dtype,
                                      int64_t b, int64_t h, int64_t n, int64_t d);
STEM_API stem_tensor stem_tensor_bnhd(stem_buffer *buf, size_t offset, stem_dtype dtype,
                                      int64_t b, int64_t h, int64_t n, int64_t d);

/* ---------------------------------------------------------- configuration */

typedef enum stem_selector {
    STEM_SELECTOR_STEM = 0,       /* official-code semantics (default) */
    STEM_SELECTOR_STEM_PAPER = 1, /* paper-literal formulas */
    STEM_SELECTOR_UNIFORM = 2,    /* routing only (beta = 0), constant top-k */
    STEM_SELECTOR_XATTENTION = 3, /* antidiagonal softmax mass, threshold tau (official rule) */
    STEM_SELECTOR_DENSE = 4,      /* every causal block */
    STEM_SELECTOR_XATTENTION_STRICT = 5, /* the same mass, paper-literal threshold rule */
    STEM_SELECTOR_COUNT = 6
} stem_selector;

/* "stem", "stem_paper", "uniform", "xattention", "dense", "xattention_strict". */
STEM_API const char *stem_selector_name(stem_selector selector);
/* Parses the names above (case-insensitive). */
STEM_API stem_status stem_selector_from_name(const char *name, stem_selector *out);

/* Every constant of the algorithm. stem_config_init() reproduces the
 * official code: block 128, stride 8, beta 0.2, mu 0.7, 4 sink + 4 local
 * blocks, k_start = int(0.2 n + 30) for 56 <= n < 160, int(0.1 n) + 30 for
 * n >= 160, dense for n < 56 blocks. */
typedef struct stem_config {
    size_t struct_size;
    stem_selector selector;
    int32_t block_size;          /* B: power of two, 16..128 */
    int32_t stride;              /* S: antidiagonal stride, power of two, 1..block_size */
    float beta;                  /* value-magnitude weight (0.2) */
    double mu;                   /* TPD decay ratio k_end = mu * k_start, 0..1 (0.7); double
                                    so floor(mu * k) matches the official code */
    int32_t sink_blocks;         /* forced initial blocks (4), >= 0 */
    int32_t local_blocks;        /* forced local window incl. the diagonal (4), >= 1 */
    float norm;                  /* extra routing divisor (1.0), > 0 */
    /* k_start rule (official code) */
    int32_t dense_below_blocks;  /* n < this: layer runs dense (56) */
    int32_t medium_below_blocks; /* n < this: k = int(medium_rate*n + medium_bias) (160) */
    double medium_rate;          /* 0.2 */
    int32_t medium_bias;         /* 30 */
    double large_rate;           /* else k = int(large_rate*n) + large_bias: 0.1 */
    int32_t large_bias;          /* 30 */
    int32_t k_start;             /* > 0: use this k_start (blocks) instead of the rule */
    /* STEM_PAPER: k_start = max(int(rate*n), paper_min_blocks), rate =
     * paper_short_rate if N <= paper_switch_tokens else paper_long_rate */
    double paper_short_rate;     /* 0.2 */
    double paper_long_rate;      /* 0.1 */
    int64_t paper_switch_tokens; /* 16384 */
    int32_t paper_min_blocks;    /* 54 */
    /* UNIFORM: constant budget; 0 = round(k_start * (1 + mu) / 2) (equal cost) */
    int32_t uniform_k;
    /* XATTENTION: keep the fewest blocks whose softmax mass reaches tau */
    float xattn_threshold;       /* tau (0.9), in (0, 1] */
    /* Model-level: layers with layer_index < dense_layers run dense (2). */
    int32_t dense_layers;
    /* > 0: a plan whose budget keeps at least this fraction of the causal
     * blocks runs dense instead (every causal block, no scoring), since
     * scoring and selection cannot pay off there. 0 = off (default, as the
     * official code); in [0, 1]. Not applied to the XATTENTION selectors. */
    double dense_above_density;
} stem_config;
STEM_API void stem_config_init(stem_config *cfg);

/* --------------------------------------------------------------- the plan */

/* Value statistics of the STEM value bonus (docs/semantics.md section 2). */
typedef enum stem_vstats_mode {
    STEM_VSTATS_VISIBLE = 0,  /* computed over the visible keys [0, kv_len) (default) */
    STEM_VSTATS_PROVIDED = 1  /* (mean, std) per (batch, KV head) given by the caller
                                 through stem_call_io.vstats_in: such a plan runs only
                                 through stem_prefill_ex (stem_score and stem_prefill
                                 answer STEM_ERR_INVALID_ARGUMENT) */
} stem_vstats_mode;

/* Varlen batches (docs/semantics.md section 9). A plan with q_layout =
 * STEM_Q_PACKED is a varlen plan: every call passes a stem_seqs that gives
 * each sequence b its own query count M_b, visible keys L_b and prompt
 * length N_b, and the plan's batch, q_len and kv_len are upper bounds (on
 * the call's batch, every M_b, every L_b); prompt_len must be 0.
 * stem_plan_get_info describes that bound geometry; its workspace_bytes
 * covers any call (with paged K/V: room to gather one sequence's K and V). */
typedef enum stem_q_layout {
    STEM_Q_BHND = 0,  /* q [B, Hq, M, d]: every entry the same geometry (default) */
    STEM_Q_PACKED = 1 /* q [1, Hq, T_q, d]: sequence b holds tokens
                         cu_seqlens_q[b] .. cu_seqlens_q[b+1] - 1 (T_q = cu_seqlens_q[B]);
                         out and lse follow q */
} stem_q_layout;

/* Where a varlen call's keys and values live (STEM_Q_PACKED plans only). */
typedef enum stem_kv_store {
    STEM_KV_BHND = 0,   /* k, v [B, Hkv, Lk, d]: sequence b uses rows [0, L_b) of entry b */
    STEM_KV_PACKED = 1, /* k, v [1, Hkv, T_k, d]: rows cu_seqlens_kv[b] .. cu_seqlens_kv[b+1]-1 */
    STEM_KV_PAGED = 2   /* k, v [num_pages, Hkv, page_size, d] page pools (NHD or HND pages
                           by strides, K and V separate tensors; strides[3] must be 1): key
                           t of sequence b sits in page block_table[b][t / page_size] at
                           slot t % page_size */
} stem_kv_store;

/* One attention call's shape. Causal prefill, fresh (q_len == kv_len) or
 * chunked / prefix-cached (q_len < kv_len):
 *  - the queries are the LAST q_len positions: query i sits at absolute
 *    position P + i, P = kv_len - q_len, and sees keys [0, P + i]
 *    (bottom-right causal alignment);
 *  - k and v hold all kv_len visible keys, the call's own keys included;
 *  - selection rows are absolute query blocks I = floor(position / B): the
 *    call touches rows floor(P / B) .. ceil(kv_len / B) - 1 (the first and
 *    last may be partial) against ceil(kv_len / B) key blocks. */
typedef struct stem_attention_desc {
    size_t struct_size;
    int64_t batch;
    int64_t num_q_heads;   /* Hq, a multiple of num_kv_heads (GQA) */
    int64_t num_kv_heads;  /* Hkv */
    int64_t q_len;         /* M: this call's queries, 1 <= q_len <= kv_len */
    int64_t kv_len;        /* L: visible keys, prefix + this call's tokens */
    int64_t head_dim;      /* d */
    stem_dtype dtype;      /* dtype of Q, K, V (f32, f16, bf16) */
    int32_t causal;        /* must be 1 */
    float softmax_scale;   /* 0 = 1/sqrt(d); also scales the routing term */
    int32_t layer_index;   /* model layer, -1 = unknown (never forced dense) */
    /* Appended; a caller whose struct_size ends before them gets the defaults. */
    int64_t prompt_len;    /* the prompt length the budget is keyed on (where prefill
                              ends): >= kv_len; 0 = kv_len. For chunked prefill pass the
                              full prompt length with every chunk, else early chunks get
                              the (sparser) schedule of a shorter prompt */
    int32_t vstats_mode;   /* stem_vstats_mode (STEM_VSTATS_VISIBLE) */
    /* Appended: varlen batches and paged KV (docs/semantics.md section 9). */
    int32_t q_layout;      /* stem_q_layout (STEM_Q_BHND) */
    int32_t kv_store;      /* stem_kv_store (STEM_KV_BHND) */
    int32_t page_size;     /* STEM_KV_PAGED: tokens per page, >= 1 (0 otherwise) */
} stem_attention_desc;
STEM_API void stem_attention_desc_init(stem_attention_desc *desc);

/* cfg may be NULL (defaults). The plan copies both descriptors. */
STEM_API stem_status stem_plan_create(stem_context *ctx, const stem_attention_desc *desc,
                                      const stem_config *cfg, stem_plan **out);
/* Before its context is destroyed, and before a workspace buffer given to
 * stem_plan_set_workspace. NULL is a no-op. */
STEM_API void stem_plan_destroy(stem_plan *plan);

typedef struct stem_plan_info {
    size_t struct_size;
    int64_t num_q_blocks;    /* nq: selection rows of a call, ceil(L / B) - floor(P / B) */
    int64_t num_k_blocks;    /* nk = ceil(L / B) */
    int32_t dense;           /* this plan keeps every causal block */
    int32_t k_start;         /* blocks; = nk when dense */
    int32_t k_end;           /* last row's budget */
    double budget_density;   /* sum(budget)/causal blocks, forced blocks not counted */
    size_t workspace_bytes;  /* what stem_prefill needs (see stem_plan_set_workspace) */
    stem_selector selector;
} stem_plan_info;
STEM_API void stem_plan_info_init(stem_plan_info *info);
STEM_API stem_status stem_plan_get_info(const stem_plan *plan, stem_plan_info *info);
/* Per query-block top-k budget (before forced blocks) of the call's rows
 * (absolute rows floor(P / B) ..), count >= nq entries. XATTENTION and DENSE
 * report the prompt's block count for every row. */
STEM_API stem_status stem_plan_get_budget(const stem_plan *plan, int32_t *budget, size_t count);
/* Optional caller-provided workspace for stem_prefill (>= workspace_bytes
 * from offset). Without one, the plan allocates it on first use. */
STEM_API stem_status stem_plan_set_workspace(stem_plan *plan, stem_buffer *buf, size_t offset);

/* ----------------------------------------------------------------- stages */

/* Tensors (logical dims; M = q_len, L = kv_len, P = L - M):
 *   q      [B, Hq,  M, d]   f32 | f16 | bf16 (desc.dtype)
 *   k, v   [B, Hkv, L, d]   desc.dtype
 *   scores [B, Hq, nq, nk]  f32   block logits; -inf above the diagonal
 *                                 (XATTENTION: block softmax mass, 0 above)
 *   index  [B, Hq, nq, nk]  i32   kept key blocks, ascending, padded with -1
 *   count  [B, Hq, nq, 1]   i32   number of kept blocks per row
 *   out    [B, Hq,  M, d]   f32 | f16 | bf16
 * nk = ceil(L / B) key blocks; nq = nk - floor(P / B) rows: row r is the
 * absolute query block floor(P / B) + r and holds only this call's queries
 * (for a fresh prefill nq = nk = ceil(N / B)). out must not overlap q, k or v. */
STEM_API stem_status stem_score(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                                const stem_tensor *v, const stem_tensor *scores);
STEM_API stem_status stem_select(stem_plan *plan, const stem_tensor *scores,
                                 const stem_tensor *index, const stem_tensor *count);
/* Block lists may come from anywhere: entries must be ascending, in
 * [0, I] (causal; I = floor(P / B) + r is row r's absolute block), count in
 * [0, nk]. A query with no visible key gets 0. */
STEM_API stem_status stem_attention(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                                    const stem_tensor *v, const stem_tensor *index,
                                    const stem_tensor *count, const stem_tensor *out);
/* score + select + attention. scores, index and count are optional
 * outputs (NULL: kept in the workspace). */
STEM_API stem_status stem_prefill(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                                  const stem_tensor *v, const stem_tensor *out,
                                  const stem_tensor *scores, const stem_tensor *index,
                                  const stem_tensor *count);

/* Per-call sequence geometry of a varlen plan (STEM_Q_PACKED), passed
 * through stem_call_io.seqs. The tensors are i32 on the plan's context, any
 * strides; their values are read on the host (GPU backends: one small
 * blocking read per tensor and call). Sequence b has M_b = cu_seqlens_q[b+1]
 * - cu_seqlens_q[b] queries at positions P_b + i, P_b = L_b - M_b (bottom
 * right, as a chunked call), its own budget (N_b), statistics and rows; a
 * sequence with M_b = 0 is skipped (nothing of it is written). */
typedef struct stem_seqs {
    size_t struct_size;
    int32_t batch;                     /* B of this call, 1 .. desc.batch */
    const stem_tensor *cu_seqlens_q;   /* [1, 1, 1, B+1], required: 0, ascending */
    const stem_tensor *seqlens_kv;     /* [1, 1, 1, B]: L_b, prefix included; required for
                                          KV_BHND and KV_PAGED, optional for KV_PACKED
                                          (then it must agree with cu_seqlens_kv) */
    const stem_tensor *cu_seqlens_kv;  /* [1, 1, 1, B+1]: KV_PACKED only, required there */
    const stem_tensor *block_table;    /* [1, 1, B, W]: KV_PAGED only, required there;
                                          W >= ceil(L_b / page_size), entries of pages in use
                                          in [0, num_pages) */
    const stem_tensor *prompt_lens;    /* [1, 1, 1, B], optional: N_b >= L_b, 0 = L_b */
} stem_seqs;
STEM_API void stem_seqs_init(stem_seqs *seqs);

/* Per-call inputs and outputs of stem_prefill_ex beyond q, k, v, out. Every
 * field is optional (NULL) unless stated. */
typedef struct stem_call_io {
    size_t struct_size;
    const stem_tensor *scores, *index, *count; /* as stem_prefill's optional outputs */
    /* f32 [B, Hkv, 1, 2]: (mean, std) of the value bonus's log group maxima
     * (docs/semantics.md section 2); required by STEM_VSTATS_PROVIDED plans,
     * ignored otherwise. Must be finite with std >= 0: checked in host-visible
     * buffers (STEM_ERR_INVALID_ARGUMENT); GPU memory is not read back (no
     * synchronisation), and bad values there give NaN or meaningless bonuses. */
    const stem_tensor *vstats_in;
    /* f32 [B, Hkv, 1, 2]: the statistics the call used (STEM and DENSE
     * selectors; (0, 0) when no full stride group is visible). */
    const stem_tensor *vstats_out;
    /* f32 [B, Hq, M, 1]: natural log of each query's softmax denominator over
     * the keys it attended (scale included), -inf for a query with none; lets
     * an engine merge partial attentions. */
    const stem_tensor *lse;
    /* Appended: required by varlen plans (STEM_Q_PACKED), NULL otherwise. */
    const stem_seqs *seqs;
} stem_call_io;
STEM_API void stem_call_io_init(stem_call_io *io);
/* stem_prefill with per-call inputs/outputs; io may be NULL (= stem_prefill
 * without optional outputs). A backend without value statistics or lse
 * output answers STEM_ERR_UNSUPPORTED when they are asked for.
 *
 * Varlen plans (STEM_Q_PACKED) take io->seqs (required) and the tensors
 *   q, out [1, Hq, T_q, d]; lse [1, Hq, T_q, 1]; k, v per desc.kv_store;
 *   vstats_in, vstats_out [B, Hkv, 1, 2] (B = seqs->batch);
 *   scores, index [1, Hq, R, W], count [1, Hq, R, 1] with W = ceil(desc.kv_len
 *   / block_size): sequence b owns rows row_ptr[b] .. row_ptr[b+1] - 1,
 *   row_ptr the prefix sums of rows_b = ceil(L_b / B) - floor(P_b / B) (0 when
 *   M_b = 0), R = row_ptr[B]; its lists use columns [0, ceil(L_b / B))
 *   (ascending, -1 padded there) and leave the columns after untouched.
 * They run as one pass per sequence (see docs/semantics.md section 9 for
 * the cost). Plans of other layouts take no seqs. */
STEM_API stem_status stem_prefill_ex(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                                     const stem_tensor *v, const stem_tensor *out,
                                     const stem_call_io *io);

/* Host helper: one call's selection (absolute query-block rows) as a
 * chunk-local block mask, the row convention of hpc-ops and MIT
 * Block-Sparse-Attention. For a call of q_len = M queries and kv_len = L keys
 * (P = L - M), nk = ceil(L / block_size), rows = nk - floor(P / block_size):
 *   index [heads][rows][nk], count [heads][rows] (stem_prefill_ex's lists,
 *   heads = B * Hq for a batch), mask u8 [heads][ceil(M / block_size)][nk].
 * Local tile t holds the call's queries [t * block_size, (t + 1) * block_size)
 * and gets the union of the (at most two) absolute rows those queries fall
 * in, so it never misses a selected block; with P mod block_size = 0 it is
 * exactly its row. Lists are checked first (counts in [0, nk], entries in
 * [0, nk)): on failure nothing is written. */
STEM_API stem_status stem_selection_to_local_mask(int64_t q_len, int64_t kv_len,
                                                  int32_t block_size, int64_t heads,
                                                  const int32_t *index, const int32_t *count,
                                                  uint8_t *mask);

#ifdef __cplusplus
}
#endif
#endif /* STEM_H */
