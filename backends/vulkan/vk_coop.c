/* Vulkan backend: the cooperative-matrix attention paths (shaders/attention_coop.comp).
 * Taken when the device has VK_KHR_cooperative_matrix (preferred: the portable
 * one; kernel attention_coop_khr) or VK_NV_cooperative_matrix (attention_coop)
 * with a 16x16x16 f16 x f16 -> f32 shape on 32-wide subgroups, f16 arithmetic
 * and 16-bit storage, vote and clustered subgroup operations and the Vulkan
 * memory model, and the plan's tensors are f16 with contiguous, 16-byte
 * aligned rows, or bf16 (f32 on request) read through f16 copies
 * (vk_convert.c). Everything else runs the plain kernels. The KHR modules
 * are checked word by word against the device's matrix list before KHR is
 * taken (a type the driver does not support can crash pipeline creation). */
#include "vk_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_extension(stem_vk_context *c, const char *name)
{
    uint32_t n = 0;
    if (c->f.vkEnumerateDeviceExtensionProperties(c->phys, NULL, &n, NULL) != VK_SUCCESS || !n)
        return 0;
    VkExtensionProperties *ext = calloc(n, sizeof *ext);
    if (!ext)
        return 0;
    int found = 0;
    if (c->f.vkEnumerateDeviceExtensionProperties(c->phys, NULL, &n, ext) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(ext[i].extensionName, name) == 0;
    free(ext);
    return found;
}

int vk_device_has_extension(stem_vk_context *c, const char *name)
{
    return has_extension(c, name);
}

/* A 16x16x16 subgroup shape with f16 A and B and f32 C and D (NV). */
static int has_shape_nv(stem_vk_context *c)
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

/* The device's KHR list (malloc'd, *n entries), or NULL. */
static VkCooperativeMatrixPropertiesKHR *khr_list(stem_vk_context *c, uint32_t *n)
{
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR get =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)c->f.vkGetInstanceProcAddr(
            c->instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
    *n = 0;
    if (!get || get(c->phys, n, NULL) != VK_SUCCESS || *n == 0 || *n > 4096)
        return NULL;
    VkCooperativeMatrixPropertiesKHR *p = calloc(*n, sizeof *p);
    if (!p)
        return NULL;
    for (uint32_t i = 0; i < *n; i++)
        p[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
    VkResult r = get(c->phys, n, p);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(p);
        return NULL;
    }
    return p;
}

/* The 16x16x16 shape with A and B of `ab`, C and Result f32, subgroup scope. */
static int has_shape_khr(const VkCooperativeMatrixPropertiesKHR *p, uint32_t n,
                         VkComponentTypeKHR ab)
{
    for (uint32_t i = 0; i < n; i++)
        if (p[i].MSize == 16 && p[i].NSize == 16 && p[i].KSize == 16 && p[i].AType == ab &&
            p[i].BType == ab && p[i].CType == VK_COMPONENT_TYPE_FLOAT32_KHR &&
            p[i].ResultType == VK_COMPONENT_TYPE_FLOAT32_KHR &&
            p[i].scope == VK_SCOPE_SUBGROUP_KHR)
            return 1;
    return 0;
}

/* SPIR-V words the module check reads. */
#define SPV_MAGIC 0x07230203u
#define SPV_OP_TYPE_FLOAT 22u
#define SPV_OP_CONSTANT 43u
#define SPV_OP_TYPE_COOPMAT_KHR 4456u
#define SPV_SCOPE_SUBGROUP 3u

typedef struct spv_id {
    uint8_t kind;   /* 1: 32-bit constant, 2: float type */
    int32_t comp;   /* float type: VkComponentTypeKHR, or -1 for one we do not know */
    uint32_t value; /* constant */
} spv_id;

/* 1 if a matrix of this component type, rows, columns and use (0 A, 1 B,
 * 2 accumulator) is in the device's list at subgroup scope. */
static int khr_type_listed(const VkCooperativeMatrixPropertiesKHR *p, uint32_t n, int32_t comp,
                           uint32_t rows, uint32_t cols, uint32_t use)
{
    for (uint32_t i = 0; i < n; i++) {
        if (p[i].scope != VK_SCOPE_SUBGROUP_KHR)
            continue;
        if ((use == 0 && p[i].MSize == rows && p[i].KSize == cols && (int32_t)p[i].AType == comp) ||
            (use == 1 && p[i].KSize == rows && p[i].NSize == cols && (int32_t)p[i].BType == comp) ||
            (use == 2 && p[i].MSize == rows && p[i].NSize == cols &&
             ((int32_t)p[i].CType == comp || (int32_t)p[i].ResultType == comp)))
            return 1;
    }
    return 0;
}

/* Every OpTypeCooperativeMatrixKHR of module k is a type the device lists.
 * A driver handed a matrix type it does not support may crash in
 * vkCreateComputePipelines (nothing to catch), so the module is checked
 * before the path is taken; 0 with the reason in why otherwise. */
static int khr_module_ok(vk_kernel k, const VkCooperativeMatrixPropertiesKHR *p, uint32_t n,
                         char *why, size_t why_size)
{
    static const char *const comp_names[2] = {"f16", "f32"};
    const vk_spirv sp = stem_vk_spirv(k);
    const uint32_t *w = sp.code;
    const size_t nw = sp.bytes / 4;
    if (nw < 5 || w[0] != SPV_MAGIC || w[3] == 0 || w[3] > (1u << 22)) {
        snprintf(why, why_size, "kernel %d: not a SPIR-V module", (int)k);
        return 0;
    }
    const uint32_t bound = w[3];
    spv_id *ids = calloc(bound, sizeof *ids);
    if (!ids) {
        snprintf(why, why_size, "out of host memory");
        return 0;
    }
    int ok = 1, seen = 0;
    for (size_t i = 5; ok && i < nw;) {
        const uint32_t wc = w[i] >> 16, op = w[i] & 0xffffu;
        if (wc == 0 || i + wc > nw) {
            snprintf(why, why_size, "kernel %d: malformed SPIR-V", (int)k);
            ok = 0;
            break;
        }
        if (op == SPV_OP_TYPE_FLOAT && wc >= 3 && w[i + 1] < bound) {
            spv_id *t = &ids[w[i + 1]];
            t->kind = 2;
            t->comp = -1;
            if (w[i + 2] == 32 && wc == 3)
                t->comp = VK_COMPONENT_TYPE_FLOAT32_KHR;
            else if (w[i + 2] == 16 && wc == 3)
                t->comp = VK_COMPONENT_TYPE_FLOAT16_KHR;
            else if (w[i + 2] == 16 && wc == 4 && w[i + 3] == 0) /* BFloat16KHR encoding */
                t->comp = (int32_t)VK_COMPONENT_TYPE_BFLOAT16_KHR;
        } else if (op == SPV_OP_CONSTANT && wc == 4 && w[i + 2] < bound) {
            ids[w[i + 2]].kind = 1;
            ids[w[i + 2]].value = w[i + 3];
        } else if (op == SPV_OP_TYPE_COOPMAT_KHR && wc == 7) {
            seen++;
            uint32_t v[4] = {0, 0, 0, 0}; /* scope, rows, columns, use */
            int known = w[i + 2] < bound && ids[w[i + 2]].kind == 2;
            for (int j = 0; j < 4 && known; j++) {
                known = w[i + 3 + j] < bound && ids[w[i + 3 + j]].kind == 1;
                if (known)
                    v[j] = ids[w[i + 3 + j]].value;
            }
            const int32_t comp = known ? ids[w[i + 2]].comp : -1;
            if (!known || comp < 0 || v[0] != SPV_SCOPE_SUBGROUP || v[3] > 2 ||
                !khr_type_listed(p, n, comp, v[1], v[2], v[3])) {
                snprintf(why, why_size,
                         "kernel %d declares a %s matrix %ux%u, use %d, scope %u, that the "
                         "device does not list",
                         (int)k,
                         comp == (int32_t)VK_COMPONENT_TYPE_BFLOAT16_KHR ? "bf16"
                         : comp >= 0 && comp < 2                         ? comp_names[comp]
                                                                         : "unknown",
                         v[1], v[2], (int)v[3], v[0]);
                ok = 0;
            }
        }
        i += wc;
    }
    free(ids);
    if (ok && !seen) {
        snprintf(why, why_size, "kernel %d declares no cooperative matrix", (int)k);
        ok = 0;
    }
    return ok;
}

/* Why the KHR path (or one of its kernels) was not taken, for the log;
 * appended once (the device probe may run the checks more than once). */
static void coop_note(stem_vk_context *c, const char *fmt, const char *what)
{
    char line[320];
    snprintf(line, sizeof line, fmt, what);
    if (strstr(c->coop_note, line))
        return;
    const size_t used = strlen(c->coop_note);
    snprintf(c->coop_note + used, sizeof c->coop_note - used, "%s%s", used ? "; " : "", line);
}

/* The path asked for in the environment. Without one: KHR where the device
 * and its cooperative-matrix list pass every check, else NV, else the plain
 * kernels. KHR is the extension AMD, Intel and Mesa drivers expose, and on
 * the H100 (driver 580.159.04, d21ace1) it passed the whole suite and ran
 * 5-12% faster than NV; STEM_VULKAN_PATH=nv keeps NVIDIA's vendor path. */
static int path_wanted(void)
{
    const char *env = getenv("STEM_VULKAN_COOP");
    if (env && strcmp(env, "0") == 0)
        return VK_COOP_NONE;
    const char *path = getenv("STEM_VULKAN_PATH");
    if (path && strcmp(path, "plain") == 0)
        return VK_COOP_NONE;
    if (path && strcmp(path, "nv") == 0)
        return VK_COOP_NV;
    return VK_COOP_KHR;
}

/* Whether pipelines on this device can require 32-wide full subgroups in
 * compute (subgroup size control: core in 1.3, else VK_EXT_subgroup_size_control;
 * *ext set for the extension). A caller's device (native_queue) is taken as it
 * is: whether it enabled the feature cannot be asked, so it needs 32 lanes. */
static int sg32_control(stem_vk_context *c, int *ext)
{
    *ext = 0;
    if (c->foreign_device)
        return 0;
    const int core = c->props.apiVersion >= VK_API_VERSION_1_3;
    if (!core && !has_extension(c, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME))
        return 0;
    VkPhysicalDeviceSubgroupSizeControlProperties sp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &sp;
    c->f.vkGetPhysicalDeviceProperties2(c->phys, &p2);
    VkPhysicalDeviceSubgroupSizeControlFeatures sf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    f2.pNext = &sf;
    c->f.vkGetPhysicalDeviceFeatures2(c->phys, &f2);
    /* up to 8 subgroups a workgroup (vk_coop_tile's NSG) */
    if (sp.minSubgroupSize > 32 || sp.maxSubgroupSize < 32 ||
        !(sp.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
        sp.maxComputeWorkgroupSubgroups < 8 || !sf.subgroupSizeControl || !sf.computeFullSubgroups)
        return 0;
    *ext = !core;
    return 1;
}

/* Subgroups, feature bits and extension of one path. */
static int path_ok(stem_vk_context *c, int path, int bf16, vk_coop_features *f)
{
    /* KHR: the f16 module's every matrix type must be in the device's list
     * (bf16 and split modules likewise, or they are left out). */
    int bf16_listed = 0;
    if (path == VK_COOP_KHR) {
        if (stem_vk_spirv(VKK_ATTENTION_COOP_KHR).bytes == 0) {
            coop_note(c, "VK_KHR_cooperative_matrix not taken: %s",
                      "the library was built without glslangValidator (no KHR kernel)");
            return 0;
        }
        if (!has_extension(c, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME)) {
            coop_note(c, "VK_KHR_cooperative_matrix not taken: %s", "the device lacks it");
            return 0;
        }
        uint32_t n = 0;
        VkCooperativeMatrixPropertiesKHR *list = khr_list(c, &n);
        char why[200] = "";
        int ok = list && has_shape_khr(list, n, VK_COMPONENT_TYPE_FLOAT16_KHR);
        if (!ok)
            snprintf(why, sizeof why, "no 16x16x16 f16 x f16 -> f32 subgroup shape listed");
        else
            ok = khr_module_ok(VKK_ATTENTION_COOP_KHR, list, n, why, sizeof why);
        if (ok && stem_vk_spirv(VKK_ATTENTION_COOP_KHR_SPLIT).bytes > 0) {
            char w2[200];
            if (!khr_module_ok(VKK_ATTENTION_COOP_KHR_SPLIT, list, n, w2, sizeof w2)) {
                c->broken_kernels |= 1u << VKK_ATTENTION_COOP_KHR_SPLIT;
                coop_note(c, "KHR split f32 kernel left out: %s", w2);
            }
        }
        if (ok && bf16 && stem_vk_spirv(VKK_ATTENTION_COOP_KHR_BF16).bytes > 0 &&
            has_shape_khr(list, n, VK_COMPONENT_TYPE_BFLOAT16_KHR)) {
            char w2[200];
            bf16_listed = khr_module_ok(VKK_ATTENTION_COOP_KHR_BF16, list, n, w2, sizeof w2);
            if (!bf16_listed)
                coop_note(c, "KHR bf16 kernel left out (bf16 through f16 copies): %s", w2);
        }
        free(list);
        if (!ok) {
            coop_note(c, "VK_KHR_cooperative_matrix not taken: %s", why);
            return 0;
        }
    } else if (!has_extension(c, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) || !has_shape_nv(c)) {
        return 0;
    }
    VkPhysicalDeviceSubgroupProperties sp = {.sType =
                                                 VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceCooperativeMatrixPropertiesKHR kp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_KHR};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &sp;
    sp.pNext = path == VK_COOP_KHR ? &kp : NULL;
    c->f.vkGetPhysicalDeviceProperties2(c->phys, &p2);
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT |
                                        VK_SUBGROUP_FEATURE_VOTE_BIT |
                                        VK_SUBGROUP_FEATURE_CLUSTERED_BIT;
    /* The kernels hard-wire 32 lanes (two per row of a 16x16 square). Where
     * subgroups default to another width (AMD's drivers report 64), libstem's
     * own device asks for 32-wide full subgroups in the matrix pipelines. */
    int sg32 = 0, sg32_ext = 0;
    if (sp.subgroupSize != 32)
        sg32 = sg32_control(c, &sg32_ext);
    if ((sp.subgroupSize != 32 && !sg32) || (sp.supportedOperations & need) != need ||
        !(sp.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT)) {
        if (path == VK_COOP_KHR)
            coop_note(c, "VK_KHR_cooperative_matrix not taken: %s",
                      "subgroups are not 32 wide (nor can a pipeline ask for 32) with vote and "
                      "clustered operations in compute");
        return 0;
    }
    if (path == VK_COOP_KHR && !(kp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT)) {
        coop_note(c, "VK_KHR_cooperative_matrix not taken: %s",
                  "cooperativeMatrixSupportedStages lacks compute");
        return 0;
    }
    if (sg32 && path == VK_COOP_KHR) {
        char def[16];
        snprintf(def, sizeof def, "%u", sp.subgroupSize);
        coop_note(c, "matrix kernels ask for 32-wide subgroups (the device's default is %s)", def);
    }
    memset(f, 0, sizeof *f);
    f->sg32 = sg32;
    f->sg32_ext = sg32_ext;
    f->khr.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR;
    f->nv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
    f->storage16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    f->float16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    f->memory_model.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
    f->bf16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_BFLOAT16_FEATURES_KHR;
    /* bf16 matrices: the extension, the bf16 shape and the module. */
    f->with_bf16 = path == VK_COOP_KHR && bf16_listed &&
                   has_extension(c, VK_KHR_SHADER_BFLOAT16_EXTENSION_NAME);
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    f2.pNext = vk_coop_chain(f, path, NULL, NULL);
    c->f.vkGetPhysicalDeviceFeatures2(c->phys, &f2);
    const VkBool32 coop = path == VK_COOP_KHR ? f->khr.cooperativeMatrix : f->nv.cooperativeMatrix;
    if (!coop || !f->storage16.storageBuffer16BitAccess || !f->float16.shaderFloat16 ||
        !f->memory_model.vulkanMemoryModel) {
        if (path == VK_COOP_KHR)
            coop_note(c, "VK_KHR_cooperative_matrix not taken: %s",
                      "a feature the kernel needs is off (cooperativeMatrix, 16-bit storage, "
                      "shaderFloat16 or vulkanMemoryModel)");
        return 0;
    }
    const int with_bf16 = f->with_bf16 && f->bf16.shaderBFloat16Type &&
                          f->bf16.shaderBFloat16CooperativeMatrix;
    /* Enable exactly what the shader declares. */
    const VkStructureType types[6] = {f->khr.sType,     f->nv.sType,
                                      f->storage16.sType, f->float16.sType,
                                      f->memory_model.sType, f->bf16.sType};
    memset(f, 0, sizeof *f);
    f->sg32 = sg32;
    f->sg32_ext = sg32_ext;
    f->khr.sType = types[0];
    f->nv.sType = types[1];
    f->storage16.sType = types[2];
    f->float16.sType = types[3];
    f->memory_model.sType = types[4];
    f->bf16.sType = types[5];
    f->with_bf16 = with_bf16;
    f->bf16.shaderBFloat16Type = f->bf16.shaderBFloat16CooperativeMatrix = (VkBool32)with_bf16;
    f->khr.cooperativeMatrix = f->nv.cooperativeMatrix = VK_TRUE;
    f->storage16.storageBuffer16BitAccess = VK_TRUE;
    f->float16.shaderFloat16 = VK_TRUE;
    f->memory_model.vulkanMemoryModel = VK_TRUE;
    f->sg_control.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES;
    f->sg_control.subgroupSizeControl = f->sg_control.computeFullSubgroups = (VkBool32)sg32;
    return 1;
}

void *vk_coop_chain(vk_coop_features *f, int path, const char **extensions, uint32_t *n)
{
    /* Queries (extensions NULL) chain the bf16 struct to read its bits. */
    const int bf16 = path == VK_COOP_KHR && f->with_bf16;
    f->storage16.pNext = &f->float16;
    f->float16.pNext = &f->memory_model;
    /* Subgroup size control only on device creation (extensions given), where
     * path_ok found it supported: queries never chain it. */
    void *tail = extensions && f->sg32 ? (void *)&f->sg_control : NULL;
    f->sg_control.pNext = NULL;
    f->memory_model.pNext = bf16 ? (void *)&f->bf16 : tail;
    f->bf16.pNext = tail;
    if (n)
        *n = 0;
    if (extensions && f->sg32 && f->sg32_ext)
        extensions[(*n)++] = VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME;
    if (path == VK_COOP_KHR) {
        f->khr.pNext = &f->storage16;
        if (extensions) {
            extensions[(*n)++] = VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME;
            if (bf16)
                extensions[(*n)++] = VK_KHR_SHADER_BFLOAT16_EXTENSION_NAME;
        }
        return &f->khr;
    }
    f->nv.pNext = &f->storage16;
    if (extensions)
        extensions[(*n)++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
    return &f->nv;
}

int vk_coop_probe(stem_vk_context *c, int best, int bf16, vk_coop_features *f)
{
    const char *bf16_env = getenv("STEM_VULKAN_BF16");
    if (bf16_env && strcmp(bf16_env, "0") == 0)
        bf16 = 0;
    const int want = path_wanted();
    if (best > want)
        best = want;
    /* The 1.2 feature structs need a 1.2 instance and device. */
    uint32_t iv = 0;
    if (best == VK_COOP_NONE || c->props.apiVersion < VK_API_VERSION_1_2 ||
        !c->f.vkEnumerateInstanceVersion || c->f.vkEnumerateInstanceVersion(&iv) != VK_SUCCESS ||
        iv < VK_API_VERSION_1_2)
        return VK_COOP_NONE;
    /* KHR where it passes every check, else NV (the reason goes to the log:
     * vk_context_init); STEM_VULKAN_PATH=khr-only keeps the old rule, KHR or
     * the plain kernels, for a device check that must not measure NV as KHR. */
    const char *forced = getenv("STEM_VULKAN_PATH");
    if (best == VK_COOP_KHR && path_ok(c, VK_COOP_KHR, bf16, f))
        return VK_COOP_KHR;
    if (forced && strcmp(forced, "khr-only") == 0)
        return VK_COOP_NONE;
    if (best >= VK_COOP_NV && path_ok(c, VK_COOP_NV, 0, f))
        return VK_COOP_NV;
    return VK_COOP_NONE;
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
 * floats per subgroup (and, for KHR, a 16x16 f16 square per subgroup; with
 * VARIANT bit 4, P shares the f32 square and the f16 one shrinks to one
 * element, 16 bytes counted). */
static uint64_t coop_shared(int path, int split, uint32_t variant, uint64_t nsg, uint64_t bc,
                            uint64_t d)
{
    const uint64_t psq = path != VK_COOP_KHR ? 0 : (variant & 4u) ? 16 : nsg * 512;
    return (split ? 4 : 2) * bc * (d / 8 + 1) * 16 + nsg * 16 * (20 * 4 + 4) + psq;
}

int vk_coop_tile(const stem_vk_context *c, const stem_plan *plan, const stem_tensor *q,
                 const stem_tensor *k, const stem_tensor *v, const stem_tensor *out,
                 int converted, int split, vk_kernel *kernel, uint32_t *nsg, uint32_t *bc)
{
    const int64_t d = plan->desc.head_dim;
    const int32_t block = plan->cfg.block_size;
    /* The cooperative-matrix kernel runs fresh prefills only (q_len == kv_len). */
    /* Inputs the kernel reads as they are: f16, and bf16 where the KHR path has it. */
    const int bf16 = !converted && plan->desc.dtype == STEM_DTYPE_BF16 && c->coop_bf16;
    if (!c->coop || (plan->desc.dtype != STEM_DTYPE_F16 && !bf16 && !converted) || d % 16 != 0 ||
        d > 256 || block % 16 != 0 || plan->q_offset != 0 || out->strides[3] != 1)
        return 0;
    /* The f16 copies are contiguous with 16-byte rows. */
    if (!converted && (!rows_aligned(q) || !rows_aligned(k) || !rows_aligned(v)))
        return 0;
    /* Tuning knobs (H200: 128 rows and 64 keys are fastest): STEM_VULKAN_COOP_ROWS
     * (16..128 query rows per workgroup), STEM_VULKAN_COOP_BC (16 or 32 keys per tile
     * instead of 64). */
    uint32_t bcs[3] = {64, 32, 16};
    if (c->tune.coop_bc)
        bcs[0] = bcs[1] = c->tune.coop_bc;
    uint32_t most = block < 128 ? (uint32_t)block : 128u;
    if (c->tune.coop_rows && c->tune.coop_rows < most)
        most = c->tune.coop_rows;
    /* Query rows per workgroup: the whole block up to 128 (K/V tiles read once for
     * more rows), fewer when shared memory is short. Q is staged through the K tile,
     * which must hold 32 words per subgroup. */
    for (uint32_t rows = most; rows >= 16; rows /= 2) {
        if ((uint32_t)block % rows != 0)
            continue;
        for (int j = 0; j < 3; j++)
            if (bcs[j] <= (uint32_t)block && (uint32_t)block % bcs[j] == 0 &&
                coop_shared(c->coop, split, c->tune.attn_variant, rows / 16, bcs[j],
                            (uint64_t)d) <= c->shared_limit &&
                bcs[j] * ((uint64_t)d / 8 + 1) >= rows / 16 * 32) {
                const int nv = c->coop == VK_COOP_NV;
                const vk_kernel kk = split ? (nv ? VKK_ATTENTION_COOP_SPLIT
                                                 : VKK_ATTENTION_COOP_KHR_SPLIT)
                                     : nv   ? VKK_ATTENTION_COOP
                                     : bf16 ? VKK_ATTENTION_COOP_KHR_BF16
                                            : VKK_ATTENTION_COOP_KHR;
                if ((c->broken_kernels & (1u << kk)) || stem_vk_spirv(kk).bytes == 0)
                    return 0;
                *kernel = kk;
                *nsg = rows / 16;
                *bc = bcs[j];
                return 1;
            }
    }
    return 0;
}

void vk_tuning_read(vk_tuning *t)
{
    memset(t, 0, sizeof *t);
    const char *hr = getenv("STEM_VULKAN_COOP_HEADROOM");
    if (hr && atoi(hr) >= 0 && atoi(hr) <= 8)
        t->coop_headroom = (uint32_t)atoi(hr);
    const char *bc = getenv("STEM_VULKAN_COOP_BC");
    if (bc && (atoi(bc) == 16 || atoi(bc) == 32))
        t->coop_bc = (uint32_t)atoi(bc);
    const char *rows = getenv("STEM_VULKAN_COOP_ROWS");
    if (rows && atoi(rows) >= 16)
        t->coop_rows = (uint32_t)atoi(rows);
    const char *f32m = getenv("STEM_VULKAN_F32_MATRIX");
    t->f32_matrix = f32m && strcmp(f32m, "1") == 0;
    const char *b16 = getenv("STEM_VULKAN_BF16_COPY");
    t->bf16_copy = !(b16 && strcmp(b16, "0") == 0); /* default on: measured on an H100 */
    const char *f16c = getenv("STEM_VULKAN_F16_COPY");
    t->f16_copy = f16c && strcmp(f16c, "1") == 0;
    const char *sync = getenv("STEM_VULKAN_SYNC");
    t->sync_stages = sync && strcmp(sync, "1") == 0;
    /* attention_coop.comp's VARIANT bits (see the shader): 1 the tile's S as
     * independent accumulators, 2 longest block rows first, 4 KHR's P square
     * in the f32 one, 8 l summed on the components. Experimental: 0 (the
     * measured kernel) by default. Bit 4 is dropped: on the H100's driver
     * (580.159.04) it gave wrong output in 317 of 1158 suite cases. */
    const char *var = getenv("STEM_VULKAN_ATTN_VARIANT");
    if (var && atoi(var) > 0 && atoi(var) <= 15)
        t->attn_variant = (uint32_t)atoi(var) & ~4u;
    const char *ps = getenv("STEM_VULKAN_PIPELINE_STATS");
    t->pipeline_stats = ps && strcmp(ps, "1") == 0;
}

int vk_coop_adopt(stem_vk_context *c, uint32_t flags)
{
    vk_coop_features f;
    const int best = (flags & STEM_VULKAN_QUEUE_COOP_KHR)  ? VK_COOP_KHR
                     : (flags & STEM_VULKAN_QUEUE_COOP_NV) ? VK_COOP_NV
                                                           : VK_COOP_NONE;
    int path = vk_coop_probe(c, best, (flags & STEM_VULKAN_QUEUE_BF16) != 0, &f);
    /* KHR was declared but not NV: only KHR may run. */
    if (path == VK_COOP_NV && !(flags & STEM_VULKAN_QUEUE_COOP_NV))
        path = VK_COOP_NONE;
    c->coop_bf16 = path == VK_COOP_KHR && f.with_bf16;
    return path;
}
