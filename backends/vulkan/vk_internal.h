/* Vulkan backend: state shared by its host files. */
#ifndef STEM_VK_INTERNAL_H
#define STEM_VK_INTERNAL_H

#include "stem_internal.h"
#include "vk_khr_coop.h"
#include "vk_loader.h"

#include <stddef.h>
#include <stdint.h>

/* Descriptor bindings, the same in every shader (shaders/common.glsl). */
enum {
    VKB_Q = 0,
    VKB_K = 1,
    VKB_V = 2,
    VKB_SCORES = 3,
    VKB_INDEX = 4,
    VKB_COUNT = 5,
    VKB_OUT = 6,
    VKB_QFLAT = 7,  /* scratch: query phase sums */
    VKB_KFLAT = 8,  /* scratch: key phase sums */
    VKB_GMAX = 9,   /* scratch: V-norm maxima per stride group */
    VKB_VB = 10,    /* scratch: value bonus per key block */
    VKB_PARAMS = 11,/* uniform: vk_params */
    VKB_BUDGET = 12,/* per-row budget of the plan */
    VKB_COUNT_ = 13
};

/* The kernels (one SPIR-V module each, shaders/<name>.comp). */
typedef enum vk_kernel {
    VKK_PHASE_SUM = 0,
    VKK_VNORM,
    VKK_VBONUS,
    VKK_SCORE_GEMM,
    VKK_SCORE_XATTN,
    VKK_SELECT,
    VKK_ATTENTION,
    VKK_ATTENTION_ROWS,
    VKK_ATTENTION_COOP,
    VKK_TO_F16,
    VKK_ATTENTION_COOP_KHR, /* attention_coop.comp built with -DKHR (may be empty) */
    VKK_ATTENTION_COOP_KHR_BF16, /* the same reading bf16 (bf16_spirv.cmake; may be empty) */
    VKK_ABSMAX,                  /* largest |x| of a tensor, for split f32 copies */
    VKK_ATTENTION_COOP_SPLIT,    /* attention_coop.comp -DSPLIT: f32 as hi + lo f16 */
    VKK_ATTENTION_COOP_KHR_SPLIT, /* the same for KHR (may be empty) */
    VKK_SPLIT_CHECK,             /* split copies back to f32 (STEM_VULKAN_CONVERT=split) */
    VKK_COUNT_
} vk_kernel;

/* attention_coop.comp's modules: 32 lanes a subgroup (two per row of a 16 x 16 square). */
static inline int vk_kernel_is_coop(int k)
{
    return k == VKK_ATTENTION_COOP || k == VKK_ATTENTION_COOP_KHR ||
           k == VKK_ATTENTION_COOP_KHR_BF16 || k == VKK_ATTENTION_COOP_SPLIT ||
           k == VKK_ATTENTION_COOP_KHR_SPLIT;
}

/* Uniform block of every dispatch (std140; mirrors `Params` in common.glsl
 * field by field: each group of four scalars fills one 16-byte row, as the
 * static assertions below check). */
typedef struct vk_params {
    uint32_t str[7][4];  /* element strides of q k v scores index count out */
    uint32_t off[8];     /* element offsets from each binding's start, same order */
    uint32_t batch, heads, hkv, n_keys;           /* heads: of the bound tensor (Hq or Hkv);
                                                     n_keys: N, visible keys */
    uint32_t head_dim, block_size, stride, group; /* group: G = B / S */
    uint32_t n_blocks, out_dtype, items, gqa;     /* items: work items; gqa: Hq / Hkv */
    uint32_t selector, sink_blocks, local_blocks, flags; /* flags: VKF_* */
    float scale, route, beta, qmul;  /* route: routing coefficient; qmul: q multiplier */
    float tau, f1_pad1, f1_pad2, f1_pad3;
    uint32_t q_offset, row0, n_rows, geom_pad;    /* query offset P, floor(P / B), rows */
} vk_params;
_Static_assert(offsetof(vk_params, batch) == 144, "vk_params: std140 rows");
_Static_assert(offsetof(vk_params, selector) == 192, "vk_params: std140 rows");
_Static_assert(offsetof(vk_params, q_offset) == 240, "vk_params: std140 rows");
_Static_assert(sizeof(vk_params) == 256, "vk_params: std140 size");

#define VKF_DENSE 1u   /* plan keeps every causal block */
#define VKF_REVERSE 2u /* phase sum of keys (segment S-1-t) */
#define VKF_BONUS 4u   /* value bonus on */
#define VKF_PHASE2 8u  /* second dispatch of a two-pass kernel */
#define VKF_XATTN_DIAG 16u /* XAttention official rule from key block 0 (diagonal forced) */
/* Per-call tensors ride in slots a stage does not otherwise use: */
#define VKF_VSTATS_IN 32u  /* vbonus: PROVIDED statistics in the scores slot */
#define VKF_VSTATS_OUT 64u /* vbonus: statistics used, to the index slot */
#define VKF_LSE 128u       /* attention: lse to the scores slot */

/* Scratch buffers of a context: phase sums, V-norm maxima, value bonus, and
 * the f16 copies of bf16/f32 inputs for the matrix path. */
enum {
    VKS_QFLAT, VKS_KFLAT, VKS_GMAX, VKS_VB,
    VKS_Q16, VKS_K16, VKS_V16,       /* f16 copies (hi parts of split f32) */
    VKS_Q16LO, VKS_K16LO, VKS_V16LO, /* lo parts of split f32 copies */
    VKS_ABSMAX,                      /* uint [4]: largest |q|, |k|, |v| bits */
    VKS_Q32, VKS_K32, VKS_V32,       /* split copies rebuilt (STEM_VULKAN_CONVERT=split) */
    VK_SCRATCH_COUNT
};

/* Spec constants of a pipeline (shaders read constant_id 0..6; 6 is only
 * attention_coop's VARIANT, 0 everywhere else). */
#define VK_SPEC_COUNT 7
typedef struct vk_pipe_entry {
    vk_kernel kernel;
    uint32_t spec[VK_SPEC_COUNT];
    VkPipeline pipeline;
} vk_pipe_entry;

/* One device allocation with its buffer. */
typedef struct vk_mem {
    VkBuffer buffer;
    VkDeviceMemory memory;
    void *mapped;       /* persistently mapped when host-visible */
    VkDeviceSize size;
} vk_mem;

/* stem_buffer.impl */
typedef struct vk_buffer {
    vk_mem mem;
    void *user_host;    /* wrapped caller memory: the truth, mirrored around stages */
    VkDeviceSize base;  /* where the stem buffer starts in mem.buffer (wrapped VkBuffer) */
    int foreign;        /* mem.buffer is the caller's (stem_buffer_wrap_native): not freed */
} vk_buffer;

#define VK_MAX_DISPATCH 16
#define VK_PARAM_SLOT 512
#define VK_FRAMES 4 /* submissions in flight at once; the fifth waits for the first */

/* One submission: its command buffer, descriptor sets and params live until
 * its fence has signalled, so a stage can return while the device works. */
typedef struct vk_frame {
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorPool desc_pool;
    vk_mem params;               /* VK_MAX_DISPATCH slots of VK_PARAM_SLOT bytes */
    int pending;                 /* submitted; fence not yet waited for */
} vk_frame;

/* Pipelines by (kernel, spec constants): an open-addressing table that grows. */
typedef struct vk_pipe_table {
    vk_pipe_entry *slots;        /* cap entries; pipeline == VK_NULL_HANDLE: empty */
    uint32_t cap, used;
} vk_pipe_table;

/* Tuning read once per context from the environment (vk_coop.c). */
typedef struct vk_tuning {
    uint32_t coop_headroom;      /* STEM_VULKAN_COOP_HEADROOM, 0..8 */
    uint32_t coop_bc;            /* STEM_VULKAN_COOP_BC: 16, 32, or 0 = choose */
    uint32_t coop_rows;          /* STEM_VULKAN_COOP_ROWS: 16..128, or 0 = choose */
    int sync_stages;             /* STEM_VULKAN_SYNC=1: every stage waits (debugging) */
    int f32_matrix;              /* STEM_VULKAN_F32_MATRIX=1: f32 inputs through f16 copies */
    int bf16_copy;               /* bf16 inputs through f16 copies (STEM_VULKAN_BF16_COPY=0: off) */
    int f16_copy;                /* STEM_VULKAN_F16_COPY=1: f16 inputs through the same copies
                                    (A/B of caller buffers against libstem's own) */
    uint32_t attn_variant;       /* STEM_VULKAN_ATTN_VARIANT, 0..15: attention_coop's VARIANT
                                    bits (experimental; 0 = the measured kernel) */
    int pipeline_stats;          /* STEM_VULKAN_PIPELINE_STATS=1: log each new pipeline's
                                    statistics (VK_KHR_pipeline_executable_properties) */
} vk_tuning;

typedef struct stem_vk_context {
    stem_vk_fns f;
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    int foreign_device;          /* instance, device and queue are the caller's (native_queue) */
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties memprops;
    int host_buffers;            /* owned buffers host-visible and mapped (CPU devices) */
    int row_attention;           /* attention_rows kernel (CPU devices; STEM_VULKAN_ROWS) */
    uint32_t shared_limit;       /* maxComputeSharedMemorySize */
    int coop;                    /* cooperative-matrix attention: VK_COOP_* (vk_coop.c) */
    int coop_bf16;               /* the KHR path reads bf16 in place (VK_KHR_shader_bfloat16) */
    int coop_sg32;               /* matrix pipelines require 32-wide full subgroups */
    uint32_t broken_kernels;     /* bit k: kernel k failed to build here, or its matrix
                                    types are not in the device's list; not taken */
    char coop_note[512];         /* why the KHR path or a KHR kernel was not taken (logged) */
    int convert;                 /* STEM_VULKAN_CONVERT=1: bf16 inputs through f16 copies on
                                    every path (the copies tested where no matrix unit is);
                                    =split: f32 inputs through split copies rebuilt as f32 for
                                    the plain kernels (the split copies tested likewise) */
    vk_tuning tune;
    /* VK_KHR_pipeline_executable_properties, enabled only with
     * STEM_VULKAN_PIPELINE_STATS=1 on a device of our own (NULL otherwise). */
    PFN_vkGetPipelineExecutablePropertiesKHR get_exec_props;
    PFN_vkGetPipelineExecutableStatisticsKHR get_exec_stats;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout pipe_layout;
    vk_frame frames[VK_FRAMES];
    int next_frame;              /* the frame the next stage records into */
    vk_frame *rec;               /* the frame being recorded, or NULL */
    VkPipelineCache pipe_cache;
    char cache_path[1024];
    VkShaderModule modules[VKK_COUNT_];
    vk_pipe_table pipes;
    vk_mem dummy;                /* bound to every unused binding */
    vk_mem staging;              /* host <-> device copies */
    vk_mem scratch[VK_SCRATCH_COUNT];
    int n_dispatch;              /* dispatches recorded in the open command buffer */
} stem_vk_context;

/* A tensor's binding: buffer, aligned byte offset and range, element offset. */
typedef struct vk_bind {
    VkBuffer buffer;
    VkDeviceSize offset, range;
} vk_bind;

/* Per-plan state (plan->impl). */
typedef struct vk_plan {
    vk_mem budget;               /* int32 [n] */
    VkPipeline attention;        /* lazily made */
    uint32_t qt, kt;             /* attention tile: query rows, keys */
} vk_plan;

static inline stem_vk_context *vk_ctx(const stem_context *ctx)
{
    return (stem_vk_context *)ctx->impl;
}

/* Memory (vk_memory.c), the bottom layer. */
stem_status vk_error(VkResult r, const char *what);
stem_status vk_mem_create(stem_vk_context *c, VkDeviceSize bytes, int host_visible,
                          VkBufferUsageFlags usage, vk_mem *out);
void vk_mem_destroy(stem_vk_context *c, vk_mem *m);

/* Submission (vk_submit.c). Stages record into a frame's command buffer and
 * return after vkQueueSubmit; stem_synchronize (vk_wait_all) waits. Every
 * command buffer starts with a barrier on all earlier work of the queue, so
 * stages (and a caller's work before them on a shared queue) run in order. */
stem_status vk_frames_create(stem_vk_context *c);
void vk_frames_destroy(stem_vk_context *c);
/* Opens the next frame for recording (waiting for it if still in flight). */
stem_status vk_begin(stem_vk_context *c);
/* Submits the open frame; with `wait`, returns when the device is done. */
stem_status vk_submit(stem_vk_context *c, int wait);
/* Abandons a half-recorded command buffer after an error. */
void vk_abort(stem_vk_context *c);
/* Waits for every submitted frame. */
stem_status vk_wait_all(stem_vk_context *c);

/* Transfers (vk_transfer.c). */
/* Makes scratch[i] at least `bytes` large (waits for queued work to grow it). */
stem_status vk_scratch(stem_vk_context *c, int i, VkDeviceSize bytes);
/* Blocking copies between host memory and a device allocation; they wait
 * for queued work first. */
stem_status vk_upload(stem_vk_context *c, vk_mem *m, VkDeviceSize offset, const void *src,
                      VkDeviceSize bytes);
stem_status vk_download(stem_vk_context *c, vk_mem *m, VkDeviceSize offset, void *dst,
                        VkDeviceSize bytes);
/* Wrapped host buffers: host -> device before a stage, device -> host after. */
stem_status vk_sync_wrapped_in(stem_vk_context *c, const stem_tensor *const *ts, int n);
stem_status vk_sync_wrapped_out(stem_vk_context *c, const stem_tensor *const *ts, int n);
/* 1 if any of the tensors lies in wrapped host memory. */
int vk_any_wrapped(const stem_tensor *const *ts, int n);

/* Queued buffer-to-buffer copies (paged K/V gather, vk_copy.c). */
stem_status stem_vk_copy_rects(stem_context *ctx, stem_buffer *dst, const stem_buffer *src,
                               const stem_copy_rect *rects, size_t count);

/* Pipelines and dispatches (vk_dispatch.c). */
stem_status vk_pipeline(stem_vk_context *c, vk_kernel k, const uint32_t spec[VK_SPEC_COUNT],
                        VkPipeline *out);
void vk_pipes_destroy(stem_vk_context *c);
/* One dispatch of `items` workgroups (flattened: shaders rebuild the index
 * from gl_WorkGroupID.xy); binds[] has VKB_COUNT_ entries (buffer 0 = dummy). */
stem_status vk_dispatch(stem_vk_context *c, VkPipeline pipe, const vk_bind *binds,
                        const vk_params *p, uint64_t items);
/* Tensor bindings: fills the binding and the params entry (strides, element
 * offset) of slot `slot` (0..6, the VKB_* tensor order). */
stem_status vk_bind_tensor(stem_vk_context *c, const stem_tensor *t, int slot, vk_bind *binds,
                           vk_params *p);
void vk_bind_mem(vk_mem *m, int binding, vk_bind *binds);

/* One stage (vk_dispatch.c): mirrors wrapped inputs in, opens a frame, lets
 * `record` add its dispatches, submits, and mirrors the tensors of
 * `out_mask` (bit i = ts[i]) back. It waits for the device only where
 * wrapped host memory must be mirrored back (or STEM_VULKAN_SYNC=1). */
typedef stem_status (*vk_record_fn)(stem_vk_context *c, void *arg);
stem_status vk_stage_run(stem_vk_context *c, const stem_tensor *const *ts, int n,
                         uint32_t out_mask, vk_record_fn record, void *arg);
/* Common plan fields of a params block. */
void vk_params_plan(const stem_plan *plan, const stem_pass *pass, vk_params *p);

/* Stages (vk_score.c, vk_select.c, vk_attention.c). */
stem_status stem_vk_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                          const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores);
stem_status stem_vk_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                           const stem_tensor *index, const stem_tensor *count);
stem_status stem_vk_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                              const stem_tensor *k, const stem_tensor *v,
                              const stem_tensor *index, const stem_tensor *count,
                              const stem_tensor *out);
/* Attention tile for head_dim d within the shared-memory limit, for the
 * kernel the context uses (vk_attention.c); 0 if none fits. */
int vk_attention_tile(const stem_vk_context *c, int64_t d, int32_t block, uint32_t *qt,
                      uint32_t *kt);

/* Cooperative-matrix paths (vk_coop.c): c->coop. */
enum { VK_COOP_NONE = 0, VK_COOP_NV = 1, VK_COOP_KHR = 2 };
/* The feature structs to chain into vkCreateDevice (first = khr or nv),
 * filled by vk_coop_probe. */
typedef struct vk_coop_features {
    VkPhysicalDeviceCooperativeMatrixFeaturesKHR khr;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV nv;
    VkPhysicalDevice16BitStorageFeatures storage16;
    VkPhysicalDeviceShaderFloat16Int8Features float16;
    VkPhysicalDeviceVulkanMemoryModelFeatures memory_model;
    VkPhysicalDeviceShaderBfloat16FeaturesKHR bf16;
    VkPhysicalDeviceSubgroupSizeControlFeatures sg_control;
    int with_bf16;               /* KHR path: bf16 matrices too (VK_KHR_shader_bfloat16) */
    int sg32;                    /* subgroups default to another width: the matrix kernels
                                  * ask for 32 (subgroup size control; AMD's drivers) */
    int sg32_ext;                /* ... through VK_EXT_subgroup_size_control (a 1.1/1.2 device) */
} vk_coop_features;
/* The path the device can run for attention_coop.comp, KHR before NV, at
 * most `best` (STEM_VULKAN_PATH=khr|nv|plain asks for one, khr-only takes KHR
 * or the plain kernels; STEM_VULKAN_COOP=0 is plain); fills f for that path,
 * with bf16 where the device has bf16 matrices and `bf16` allows
 * (STEM_VULKAN_BF16=0 says no). KHR is taken only where every matrix type of
 * its module is in the device's list; why not goes to c->coop_note. */
int vk_coop_probe(stem_vk_context *c, int best, int bf16, vk_coop_features *f);
/* The chain to pass to vkCreateDevice and the extensions (up to 2) to enable. */
void *vk_coop_chain(vk_coop_features *f, int path, const char **extensions, uint32_t *n);
/* 1 if the physical device lists the extension. */
int vk_device_has_extension(stem_vk_context *c, const char *name);
/* On a caller's device (stem_vulkan_queue): the path its flags allow and
 * the device has. */
int vk_coop_adopt(stem_vk_context *c, uint32_t flags);
/* Kernel, subgroups per workgroup and keys per tile of the coop path for this
 * plan and these tensors (`converted`: they will be read from f16 copies;
 * `split`: f32 as hi and lo f16 copies); 0 if the plain kernel must run. */
int vk_coop_tile(const stem_vk_context *c, const stem_plan *plan, const stem_tensor *q,
                 const stem_tensor *k, const stem_tensor *v, const stem_tensor *out,
                 int converted, int split, vk_kernel *kernel, uint32_t *nsg, uint32_t *bc);
/* Attention inputs through f16 copies (vk_convert.c). */
typedef struct vk_convert_job {
    int n;                       /* tensors copied: 0 or 3 (q, k, v) */
    int split;                   /* f32 as hi and lo copies, scaled (absmax first) */
    int check;                   /* split copies rebuilt as f32 (STEM_VULKAN_CONVERT=split) */
    VkPipeline rebuild;
    vk_bind binds[3][VKB_COUNT_];
    vk_params p[3];
    uint64_t items[3], groups[3]; /* to_f16 and absmax workgroups */
    VkPipeline pipe, absmax;
    VkBuffer absmax_buf;
} vk_convert_job;
/* 1 if inputs of this dtype go through f16 copies where that path is taken
 * (f32: split into hi and lo, on a matrix path only). */
int vk_convert_dtype(const stem_vk_context *c, stem_dtype dtype);
/* Scratch, pipeline and params of the copies; rebinds slots q, k, v of the
 * attention (binds, p) to them. */
stem_status vk_convert_prepare(stem_vk_context *c, const stem_tensor *const qkv[3], int split,
                               int check, vk_convert_job *j, vk_bind *binds, vk_params *p);
stem_status vk_convert_record(stem_vk_context *c, const vk_convert_job *j);

/* Tuning from the environment, read once per context. */
void vk_tuning_read(vk_tuning *t);
/* llvmpipe's loop limiter (vk_budget.c): 1 on llvmpipe (lavapipe); STEM_OK
 * or STEM_ERR_UNSUPPORTED for a plan whose shaders would pass its budget. */
int vk_is_llvmpipe(const stem_vk_context *c);
stem_status vk_loop_budget(const stem_vk_context *c, const stem_attention_desc *desc,
                           const stem_config *cfg);

/* Embedded SPIR-V (generated at build time). */
typedef struct vk_spirv {
    const uint32_t *code;
    size_t bytes;
} vk_spirv;
vk_spirv stem_vk_spirv(vk_kernel k);

#endif /* STEM_VK_INTERNAL_H */
