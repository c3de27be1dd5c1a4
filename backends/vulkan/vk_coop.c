/* Vulkan backend: the cooperative-matrix attention path (shaders/attention_coop.comp).
 * Taken when the device has VK_NV_cooperative_matrix with a 16x16x16 f16 x f16 -> f32
 * shape on 32-wide subgroups, f16 arithmetic and 16-bit storage, vote and clustered subgroup
 * operations and the Vulkan memory model, and the plan's tensors are f16 with
 * contiguous, 16-byte aligned rows. Everything else runs the plain kernels. */
#include "vk_internal.h"

#include <stdlib.h>
#include <string.h>

static int has_extension(const VkExtensionProperties *ext, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(ext[i].extensionName, name) == 0)
            return 1;
    return 0;
}

/* A 16x16x16 subgroup shape with f16 A and B and f32 C and D. */
static int has_shape(stem_vk_context *c)
{
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV get =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)c->f.vkGetInstanceProcAddr(
            c->instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
    if (!get)
        return 0;
    uint32_t n = 0;
    if (get(c->phys, &n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkCooperativeMatrixPropertiesNV *p = calloc(n, sizeof *p);
    if (!p)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        p[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    int ok = 0;
    if (get(c->phys, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !ok; i++)
            ok = p[i].MSize == 16 && p[i].NSize == 16 && p[i].KSize == 16 &&
                 p[i].AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                 p[i].BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                 p[i].CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                 p[i].DType == VK_COMPONENT_TYPE_FLOAT32_NV && p[i].scope == VK_SCOPE_SUBGROUP_NV;
    free(p);
    return ok;
}

int vk_coop_probe(stem_vk_context *c, vk_coop_features *f)
{
    memset(f, 0, sizeof *f);
    const char *env = getenv("STEM_VULKAN_COOP");
    if (env && strcmp(env, "0") == 0)
        return 0;
    /* The 1.2 feature structs below need a 1.2 instance and device. */
    uint32_t iv = 0;
    if (c->props.apiVersion < VK_API_VERSION_1_2 || !c->f.vkEnumerateInstanceVersion ||
        c->f.vkEnumerateInstanceVersion(&iv) != VK_SUCCESS || iv < VK_API_VERSION_1_2)
        return 0;
    uint32_t n = 0;
    if (c->f.vkEnumerateDeviceExtensionProperties(c->phys, NULL, &n, NULL) != VK_SUCCESS || !n)
        return 0;
    VkExtensionProperties *ext = calloc(n, sizeof *ext);
    if (!ext)
        return 0;
    int found = c->f.vkEnumerateDeviceExtensionProperties(c->phys, NULL, &n, ext) == VK_SUCCESS &&
                has_extension(ext, n, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    free(ext);
    if (!found || !has_shape(c))
        return 0;

    VkPhysicalDeviceSubgroupProperties sp = {.sType =
                                                 VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &sp;
    c->f.vkGetPhysicalDeviceProperties2(c->phys, &p2);
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT |
                                        VK_SUBGROUP_FEATURE_VOTE_BIT |
                                        VK_SUBGROUP_FEATURE_CLUSTERED_BIT;
    if (sp.subgroupSize != 32 || (sp.supportedOperations & need) != need ||
        !(sp.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
        return 0;

    f->coop.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
    f->storage16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    f->float16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    f->memory_model.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
    f->coop.pNext = &f->storage16;
    f->storage16.pNext = &f->float16;
    f->float16.pNext = &f->memory_model;
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    f2.pNext = &f->coop;
    c->f.vkGetPhysicalDeviceFeatures2(c->phys, &f2);
    if (!f->coop.cooperativeMatrix || !f->storage16.storageBuffer16BitAccess ||
        !f->float16.shaderFloat16 || !f->memory_model.vulkanMemoryModel)
        return 0;
    /* Enable exactly what the shader declares. */
    const VkPhysicalDeviceCooperativeMatrixFeaturesNV coop = {.sType = f->coop.sType,
                                                              .cooperativeMatrix = VK_TRUE};
    const VkPhysicalDevice16BitStorageFeatures s16 = {.sType = f->storage16.sType,
                                                      .storageBuffer16BitAccess = VK_TRUE};
    const VkPhysicalDeviceShaderFloat16Int8Features f16 = {.sType = f->float16.sType,
                                                           .shaderFloat16 = VK_TRUE};
    const VkPhysicalDeviceVulkanMemoryModelFeatures mm = {.sType = f->memory_model.sType,
                                                          .vulkanMemoryModel = VK_TRUE};
    f->coop = coop;
    f->storage16 = s16;
    f->float16 = f16;
    f->memory_model = mm;
    f->coop.pNext = &f->storage16;
    f->storage16.pNext = &f->float16;
    f->float16.pNext = &f->memory_model;
    return 1;
}

/* Rows of 8 f16 (16 bytes) everywhere: offset and every stride but the last a
 * multiple of 8 elements, head_dim contiguous. */
static int rows_aligned(const stem_tensor *t)
{
    if (t->strides[3] != 1 || (t->offset % 16) != 0)
        return 0;
    for (int i = 0; i < 3; i++)
        if (t->dims[i] > 1 && t->strides[i] % 8 != 0)
            return 0;
    return 1;
}

/* Shared bytes: K and V tiles of bc padded rows, one 16x20 f32 square and 16
 * floats per subgroup. */
static uint64_t coop_shared(uint64_t nsg, uint64_t bc, uint64_t d)
{
    return 2 * bc * (d / 8 + 1) * 16 + nsg * 16 * (20 * 4 + 4);
}

int vk_coop_tile(const stem_vk_context *c, const stem_plan *plan, const stem_tensor *q,
                 const stem_tensor *k, const stem_tensor *v, const stem_tensor *out,
                 vk_kernel *kernel, uint32_t *nsg, uint32_t *bc)
{
    const int64_t d = plan->desc.head_dim;
    const int32_t block = plan->cfg.block_size;
    /* The cooperative-matrix kernel runs fresh prefills only (q_len == kv_len). */
    if (!c->coop || plan->desc.dtype != STEM_DTYPE_F16 || d % 16 != 0 || d > 256 ||
        block % 16 != 0 || plan->q_offset != 0)
        return 0;
    if (!rows_aligned(q) || !rows_aligned(k) || !rows_aligned(v) || out->strides[3] != 1)
        return 0;
    /* Tuning knobs (H200: 128 rows and 64 keys are fastest): STEM_VULKAN_COOP_ROWS
     * (16..128 query rows per workgroup), STEM_VULKAN_COOP_BC (16 or 32 keys per tile
     * instead of 64). */
    uint32_t bcs[3] = {64, 32, 16};
    const char *bc_env = getenv("STEM_VULKAN_COOP_BC");
    if (bc_env && (atoi(bc_env) == 16 || atoi(bc_env) == 32))
        bcs[0] = bcs[1] = (uint32_t)atoi(bc_env);
    uint32_t most = block < 128 ? (uint32_t)block : 128u;
    const char *env = getenv("STEM_VULKAN_COOP_ROWS");
    if (env && atoi(env) >= 16 && (uint32_t)atoi(env) < most)
        most = (uint32_t)atoi(env);
    /* Query rows per workgroup: the whole block up to 128 (K/V tiles read once for
     * more rows), fewer when shared memory is short. Q is staged through the K tile,
     * which must hold 32 words per subgroup. */
    for (uint32_t rows = most; rows >= 16; rows /= 2) {
        if ((uint32_t)block % rows != 0)
            continue;
        for (int j = 0; j < 3; j++)
            if (bcs[j] <= (uint32_t)block && (uint32_t)block % bcs[j] == 0 &&
                coop_shared(rows / 16, bcs[j], (uint64_t)d) <= c->shared_limit &&
                bcs[j] * ((uint64_t)d / 8 + 1) >= rows / 16 * 32) {
                *kernel = VKK_ATTENTION_COOP;
                *nsg = rows / 16;
                *bc = bcs[j];
                return 1;
            }
    }
    return 0;
}
