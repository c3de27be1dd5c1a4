/* Vulkan backend: ops table, probe, contexts, buffers, plans. */
#include "vk_internal.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_API VK_API_VERSION_1_1

/* ---------------------------------------------------------------- probe */

/* Instance with the loader's entry points; VK_NULL_HANDLE + why on failure. */
static VkInstance create_instance(stem_vk_fns *f, char *why, size_t why_size)
{
    PFN_vkGetInstanceProcAddr gipa;
    memset(f, 0, sizeof *f);
    if (!stem_vk_open_loader(&gipa, why, why_size))
        return VK_NULL_HANDLE;
    if (!stem_vk_load_instance(f, gipa, VK_NULL_HANDLE, why, why_size))
        return VK_NULL_HANDLE;
    uint32_t version = VK_API_VERSION_1_0;
    if (f->vkEnumerateInstanceVersion)
        f->vkEnumerateInstanceVersion(&version);
    if (version < MIN_API) {
        snprintf(why, why_size, "Vulkan loader is older than 1.1");
        return VK_NULL_HANDLE;
    }
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "libstem";
    app.pEngineName = "libstem";
    app.apiVersion = VK_API_VERSION_1_2 <= version ? VK_API_VERSION_1_2 : MIN_API;
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ci.pApplicationInfo = &app;
    VkInstance inst = VK_NULL_HANDLE;
    VkResult r = f->vkCreateInstance(&ci, NULL, &inst);
    if (r != VK_SUCCESS) {
        snprintf(why, why_size, "vkCreateInstance: %s", stem_vk_result_name(r));
        return VK_NULL_HANDLE;
    }
    if (!stem_vk_load_instance(f, gipa, inst, why, why_size)) {
        if (f->vkDestroyInstance)
            f->vkDestroyInstance(inst, NULL);
        return VK_NULL_HANDLE;
    }
    return inst;
}

/* Usable devices: Vulkan 1.1+ with a compute queue. */
static uint32_t usable_devices(const stem_vk_fns *f, VkInstance inst, VkPhysicalDevice *out,
                               uint32_t max)
{
    VkPhysicalDevice all[STEM_MAX_DEVICES_PER_BACKEND];
    uint32_t n = STEM_MAX_DEVICES_PER_BACKEND;
    if (f->vkEnumeratePhysicalDevices(inst, &n, all) < 0)
        return 0;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n && m < max; i++) {
        VkPhysicalDeviceProperties p;
        f->vkGetPhysicalDeviceProperties(all[i], &p);
        if (p.apiVersion < MIN_API)
            continue;
        uint32_t nq = 0;
        f->vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, NULL);
        VkQueueFamilyProperties qf[16];
        if (nq > 16)
            nq = 16;
        f->vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, qf);
        int compute = 0;
        for (uint32_t q = 0; q < nq; q++)
            compute |= (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
        if (compute)
            out[m++] = all[i];
    }
    return m;
}

static void describe(const stem_vk_fns *f, VkPhysicalDevice pd, stem_device_info *dev)
{
    VkPhysicalDeviceProperties p;
    f->vkGetPhysicalDeviceProperties(pd, &p);
    VkPhysicalDeviceMemoryProperties mp;
    f->vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    stem_device_info_init(dev);
    dev->backend = STEM_BACKEND_VULKAN;
    /* lavapipe and other CPU implementations are emulators, not GPUs. */
    dev->is_gpu = p.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU;
    for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
        if ((mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            mp.memoryHeaps[h].size > dev->memory_bytes)
            dev->memory_bytes = mp.memoryHeaps[h].size;
    dev->compute_units = 0; /* Vulkan does not report it */
    snprintf(dev->name, sizeof dev->name, "%s", p.deviceName);
    int coop = 0, khr = 0;
    uint32_t ne = 0;
    if (f->vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, NULL) == VK_SUCCESS && ne) {
        VkExtensionProperties *ext = calloc(ne, sizeof *ext);
        if (ext && f->vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, ext) == VK_SUCCESS)
            for (uint32_t i = 0; i < ne; i++)
            {
                coop |= strcmp(ext[i].extensionName, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) == 0;
                khr |= strcmp(ext[i].extensionName, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME) == 0;
            }
        free(ext);
    }
    snprintf(dev->detail, sizeof dev->detail,
             "Vulkan %u.%u.%u, driver 0x%x, shared memory %u KiB, max buffer range %u MiB%s%s",
             VK_API_VERSION_MAJOR(p.apiVersion), VK_API_VERSION_MINOR(p.apiVersion),
             VK_API_VERSION_PATCH(p.apiVersion), p.driverVersion,
             p.limits.maxComputeSharedMemorySize / 1024, p.limits.maxStorageBufferRange >> 20,
             khr ? ", VK_KHR_cooperative_matrix" : "", coop ? ", VK_NV_cooperative_matrix" : "");
}

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static stem_probe_result probe_cache;

/* Instances are not free to make: the device list is read once per process. */
static void probe_uncached(void)
{
    stem_probe_result *out = &probe_cache;
    memset(out, 0, sizeof *out);
    stem_vk_fns f;
    VkInstance inst = create_instance(&f, out->reason, sizeof out->reason);
    if (!inst)
        return;
    VkPhysicalDevice pds[STEM_MAX_DEVICES_PER_BACKEND];
    const uint32_t n = usable_devices(&f, inst, pds, STEM_MAX_DEVICES_PER_BACKEND);
    for (uint32_t i = 0; i < n; i++) {
        describe(&f, pds[i], &out->devices[i]);
        out->devices[i].backend_index = i;
    }
    out->device_count = n;
    if (n == 0)
        snprintf(out->reason, sizeof out->reason, "no Vulkan 1.1 device with a compute queue");
    f.vkDestroyInstance(inst, NULL);
}

static void vk_probe(stem_probe_result *out)
{
    pthread_once(&probe_once, probe_uncached);
    *out = probe_cache;
}

/* -------------------------------------------------------------- context */

static void cache_file_name(stem_vk_context *c, const char *dir)
{
    c->cache_path[0] = '\0';
    if (!dir || !*dir)
        return;
    snprintf(c->cache_path, sizeof c->cache_path, "%s/stem-vulkan-%04x-%04x-%08x.pipelinecache",
             dir, c->props.vendorID, c->props.deviceID, c->props.driverVersion);
}

static stem_status create_pipeline_cache(stem_vk_context *c)
{
    void *data = NULL;
    size_t size = 0;
    if (c->cache_path[0]) {
        FILE *fp = fopen(c->cache_path, "rb");
        if (fp) {
            if (fseek(fp, 0, SEEK_END) == 0) {
                const long len = ftell(fp);
                if (len > 0 && len < (64L << 20) && fseek(fp, 0, SEEK_SET) == 0) {
                    data = malloc((size_t)len);
                    if (data && fread(data, 1, (size_t)len, fp) == (size_t)len)
                        size = (size_t)len;
                }
            }
            fclose(fp);
        }
    }
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    ci.initialDataSize = size;
    ci.pInitialData = size ? data : NULL;
    VkResult r = c->f.vkCreatePipelineCache(c->device, &ci, NULL, &c->pipe_cache);
    if (r != VK_SUCCESS && size) { /* a stale or foreign file: start empty */
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        r = c->f.vkCreatePipelineCache(c->device, &ci, NULL, &c->pipe_cache);
    }
    free(data);
    return r == VK_SUCCESS ? STEM_OK : vk_error(r, "vkCreatePipelineCache");
}

/* Best effort: a cache that cannot be written only costs build time later. */
static void save_pipeline_cache(stem_vk_context *c)
{
    if (!c->cache_path[0] || !c->pipe_cache)
        return;
    size_t size = 0;
    if (c->f.vkGetPipelineCacheData(c->device, c->pipe_cache, &size, NULL) != VK_SUCCESS ||
        size == 0)
        return;
    void *data = malloc(size);
    if (!data)
        return;
    if (c->f.vkGetPipelineCacheData(c->device, c->pipe_cache, &size, data) == VK_SUCCESS) {
        char tmp[1040];
        snprintf(tmp, sizeof tmp, "%s.tmp", c->cache_path);
        FILE *fp = fopen(tmp, "wb");
        if (fp) {
            const int ok = fwrite(data, 1, size, fp) == size;
            if (fclose(fp) == 0 && ok)
                rename(tmp, c->cache_path);
            else
                remove(tmp);
        }
    }
    free(data);
}

static void vk_context_fini(stem_context *ctx)
{
    stem_vk_context *c = vk_ctx(ctx);
    if (!c)
        return;
    if (c->device) {
        vk_wait_all(c);
        save_pipeline_cache(c);
        vk_pipes_destroy(c);
        for (int k = 0; k < VKK_COUNT_; k++)
            if (c->modules[k])
                c->f.vkDestroyShaderModule(c->device, c->modules[k], NULL);
        for (int i = 0; i < VK_SCRATCH_COUNT; i++)
            vk_mem_destroy(c, &c->scratch[i]);
        vk_mem_destroy(c, &c->staging);
        vk_mem_destroy(c, &c->dummy);
        vk_frames_destroy(c);
        if (c->pipe_cache)
            c->f.vkDestroyPipelineCache(c->device, c->pipe_cache, NULL);
        if (c->pipe_layout)
            c->f.vkDestroyPipelineLayout(c->device, c->pipe_layout, NULL);
        if (c->set_layout)
            c->f.vkDestroyDescriptorSetLayout(c->device, c->set_layout, NULL);
        if (!c->foreign_device)
            c->f.vkDestroyDevice(c->device, NULL);
    }
    if (c->instance && !c->foreign_device)
        c->f.vkDestroyInstance(c->instance, NULL);
    free(c);
    ctx->impl = NULL;
}

static stem_status create_device(stem_vk_context *c)
{
    uint32_t nq = 0;
    c->f.vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    if (nq > 16)
        nq = 16;
    c->f.vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nq, qf);
    /* A compute queue, preferring one without graphics (less contention). */
    int fam = -1;
    for (uint32_t q = 0; q < nq; q++)
        if ((qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
            (fam < 0 || !(qf[q].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
            fam = (int)q;
    if (fam < 0)
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "vulkan: no compute queue");
    c->queue_family = (uint32_t)fam;
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qi.queueFamilyIndex = c->queue_family;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    vk_coop_features cf;
    VkResult r = VK_ERROR_FEATURE_NOT_PRESENT;
    /* STEM_VULKAN_PIPELINE_STATS=1: VK_KHR_pipeline_executable_properties too,
     * where the device has it, so pipelines can report their statistics
     * (registers, spills) to the log; put in front of every chain below. */
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pe = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
    int with_pe = 0;
    if (c->tune.pipeline_stats &&
        vk_device_has_extension(c, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) {
        VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
        f2.pNext = &pe;
        c->f.vkGetPhysicalDeviceFeatures2(c->phys, &f2);
        with_pe = pe.pipelineExecutableInfo == VK_TRUE;
        pe.pNext = NULL;
    }
    /* The best matrix path the device takes (KHR with bf16, KHR, NV), then none. */
    static const int tries[3][2] = {{VK_COOP_KHR, 1}, {VK_COOP_KHR, 0}, {VK_COOP_NV, 0}};
    for (int t = 0; t < 3 && !c->coop; t++) {
        const int path = vk_coop_probe(c, tries[t][0], tries[t][1], &cf);
        if (path == VK_COOP_NONE)
            break;
        if (path != tries[t][0] || (tries[t][1] && !cf.with_bf16))
            continue; /* a later try asks for exactly that */
        const char *ext[5];
        uint32_t next = 0;
        di.pNext = vk_coop_chain(&cf, path, ext, &next);
        if (with_pe) {
            pe.pNext = (void *)di.pNext;
            di.pNext = &pe;
            ext[next++] = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
        }
        di.enabledExtensionCount = next;
        di.ppEnabledExtensionNames = ext;
        r = c->f.vkCreateDevice(c->phys, &di, NULL, &c->device);
        if (r == VK_SUCCESS) {
            c->coop = path;
            c->coop_bf16 = cf.with_bf16;
            c->coop_sg32 = cf.sg32;
        }
    }
    if (!c->coop) { /* the plain kernels need no extension or feature */
        const char *pe_ext = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
        pe.pNext = NULL;
        di.pNext = with_pe ? &pe : NULL;
        di.enabledExtensionCount = with_pe ? 1 : 0;
        di.ppEnabledExtensionNames = with_pe ? &pe_ext : NULL;
        r = c->f.vkCreateDevice(c->phys, &di, NULL, &c->device);
    }
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreateDevice");
    char why[200];
    if (!stem_vk_load_device(&c->f, c->device, why, sizeof why))
        return stem_set_error(STEM_ERR_BACKEND_API, "vulkan: %s", why);
    c->f.vkGetDeviceQueue(c->device, c->queue_family, 0, &c->queue);
    if (with_pe) {
        c->get_exec_props = (PFN_vkGetPipelineExecutablePropertiesKHR)c->f.vkGetDeviceProcAddr(
            c->device, "vkGetPipelineExecutablePropertiesKHR");
        c->get_exec_stats = (PFN_vkGetPipelineExecutableStatisticsKHR)c->f.vkGetDeviceProcAddr(
            c->device, "vkGetPipelineExecutableStatisticsKHR");
        if (!c->get_exec_props || !c->get_exec_stats)
            c->get_exec_props = NULL, c->get_exec_stats = NULL;
    }
    return STEM_OK;
}

static stem_status create_objects(stem_vk_context *c)
{
    VkDescriptorSetLayoutBinding b[VKB_COUNT_];
    for (uint32_t i = 0; i < VKB_COUNT_; i++)
        b[i] = (VkDescriptorSetLayoutBinding){i,
                                              i == VKB_PARAMS ? VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER
                                                              : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                              1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    VkDescriptorSetLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    li.bindingCount = VKB_COUNT_;
    li.pBindings = b;
    VkResult r = c->f.vkCreateDescriptorSetLayout(c->device, &li, NULL, &c->set_layout);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreateDescriptorSetLayout");
    VkPipelineLayoutCreateInfo pl = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &c->set_layout;
    r = c->f.vkCreatePipelineLayout(c->device, &pl, NULL, &c->pipe_layout);
    if (r != VK_SUCCESS)
        return vk_error(r, "vkCreatePipelineLayout");
    stem_status st = vk_frames_create(c);
    if (st == STEM_OK)
        st = vk_mem_create(c, 64, c->host_buffers, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, &c->dummy);
    return st;
}

/* The caller's instance, device and queue (stem_vulkan_queue): checked as far
 * as Vulkan lets us, then used in place. */
static stem_status adopt_queue(stem_vk_context *c, const void *native, uint32_t backend_index)
{
    stem_vulkan_queue q;
    stem_vulkan_queue_init(&q);
    const size_t need = offsetof(stem_vulkan_queue, flags) + sizeof q.flags;
    size_t given;
    memcpy(&given, native, sizeof given);
    if (given < need || given > 4096)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "vulkan: native_queue must point to a stem_vulkan_queue set up "
                              "with stem_vulkan_queue_init (struct_size %zu)",
                              given);
    memcpy(&q, native, given < sizeof q ? given : sizeof q);
    if (!q.instance || !q.physical_device || !q.device || !q.queue)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "vulkan: native_queue needs instance, physical_device, device "
                              "and queue");
    PFN_vkGetInstanceProcAddr gipa;
    char why[256];
    if (!stem_vk_open_loader(&gipa, why, sizeof why) ||
        !stem_vk_load_instance(&c->f, gipa, (VkInstance)q.instance, why, sizeof why))
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "vulkan: %s", why);
    VkPhysicalDevice pds[STEM_MAX_DEVICES_PER_BACKEND];
    const uint32_t n = usable_devices(&c->f, (VkInstance)q.instance, pds,
                                      STEM_MAX_DEVICES_PER_BACKEND);
    if (backend_index >= n || pds[backend_index] != (VkPhysicalDevice)q.physical_device)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "vulkan: native_queue's physical_device is not Vulkan device %u "
                              "of its instance",
                              (unsigned)backend_index);
    uint32_t nq = 0;
    c->f.vkGetPhysicalDeviceQueueFamilyProperties((VkPhysicalDevice)q.physical_device, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    if (nq > 16)
        nq = 16;
    c->f.vkGetPhysicalDeviceQueueFamilyProperties((VkPhysicalDevice)q.physical_device, &nq, qf);
    if (q.queue_family >= nq || !(qf[q.queue_family].queueFlags & VK_QUEUE_COMPUTE_BIT))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "vulkan: native_queue's queue_family %u has no compute",
                              (unsigned)q.queue_family);
    c->foreign_device = 1;
    c->instance = (VkInstance)q.instance;
    c->phys = (VkPhysicalDevice)q.physical_device;
    c->device = (VkDevice)q.device;
    c->queue = (VkQueue)q.queue;
    c->queue_family = q.queue_family;
    if (!stem_vk_load_device(&c->f, c->device, why, sizeof why))
        return stem_set_error(STEM_ERR_BACKEND_API, "vulkan: %s", why);
    c->f.vkGetPhysicalDeviceProperties(c->phys, &c->props);
    c->f.vkGetPhysicalDeviceMemoryProperties(c->phys, &c->memprops);
    c->coop = vk_coop_adopt(c, q.flags);
    return STEM_OK;
}

static stem_status vk_context_init(stem_context *ctx, uint32_t backend_index)
{
    stem_vk_context *c = calloc(1, sizeof *c);
    if (!c)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan context: out of memory");
    ctx->impl = c;
    vk_tuning_read(&c->tune);
    stem_status st = STEM_OK;
    if (ctx->desc.native_queue) {
        st = adopt_queue(c, ctx->desc.native_queue, backend_index);
        if (st != STEM_OK) {
            c->device = VK_NULL_HANDLE; /* nothing of the caller's is destroyed */
            c->instance = VK_NULL_HANDLE;
            vk_context_fini(ctx);
            return st;
        }
    } else {
        char why[256];
        c->instance = create_instance(&c->f, why, sizeof why);
        if (!c->instance) {
            vk_context_fini(ctx);
            return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "vulkan: %s", why);
        }
        VkPhysicalDevice pds[STEM_MAX_DEVICES_PER_BACKEND];
        const uint32_t n = usable_devices(&c->f, c->instance, pds, STEM_MAX_DEVICES_PER_BACKEND);
        if (backend_index >= n) {
            vk_context_fini(ctx);
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "vulkan: device %u of %u",
                                  (unsigned)backend_index, (unsigned)n);
        }
        c->phys = pds[backend_index];
        c->f.vkGetPhysicalDeviceProperties(c->phys, &c->props);
        c->f.vkGetPhysicalDeviceMemoryProperties(c->phys, &c->memprops);
    }
    c->shared_limit = c->props.limits.maxComputeSharedMemorySize;
    /* On a CPU implementation device memory is host memory: map it, so the
     * core can read block lists in place (and stages need no copies). */
    c->host_buffers = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    /* The row-per-invocation attention suits CPU implementations (broadcast
     * loads, SIMD across rows); STEM_VULKAN_ROWS=0/1 overrides the choice. */
    const char *rows = getenv("STEM_VULKAN_ROWS");
    c->row_attention = rows && *rows ? strcmp(rows, "0") != 0 : c->host_buffers;
    const char *conv = getenv("STEM_VULKAN_CONVERT");
    c->convert = !conv ? 0 : strcmp(conv, "1") == 0 ? 1 : strcmp(conv, "split") == 0 ? 2 : 0;
    cache_file_name(c, ctx->desc.cache_dir);
    if (!c->foreign_device)
        st = create_device(c);
    if (st == STEM_OK)
        st = create_pipeline_cache(c);
    if (st == STEM_OK)
        st = create_objects(c);
    if (st != STEM_OK) {
        vk_context_fini(ctx);
        return st;
    }
    if (c->coop_note[0])
        stem_log(ctx, STEM_LOG_WARN, "vulkan: %s", c->coop_note);
    static const char *const paths[3] = {"plain kernels", "VK_NV_cooperative_matrix",
                                         "VK_KHR_cooperative_matrix"};
    stem_log(ctx, STEM_LOG_INFO, "vulkan: attention on %s%s%s%s%s", paths[c->coop],
             c->coop_bf16 ? " (bf16 matrices: VK_KHR_shader_bfloat16)"
             : c->coop    ? " (bf16 through f16 copies)"
                          : "",
             c->foreign_device ? ", on the caller's device" : "",
             c->tune.f32_matrix ? ", f32 as split f16 copies" : "",
             c->tune.f16_copy ? ", f16 through f16 copies" : "");
    if (c->coop && c->tune.attn_variant)
        stem_log(ctx, STEM_LOG_INFO, "vulkan: attention_coop VARIANT %u (STEM_VULKAN_ATTN_VARIANT)",
                 (unsigned)c->tune.attn_variant);
    if (c->tune.pipeline_stats)
        stem_log(ctx, STEM_LOG_INFO, "vulkan: pipeline statistics %s",
                 c->get_exec_stats ? "on (VK_KHR_pipeline_executable_properties)"
                 : c->foreign_device ? "off: the caller's device"
                                     : "off: the device lacks VK_KHR_pipeline_executable_properties");
    return STEM_OK;
}

/* -------------------------------------------------------------- buffers */

#define BUFFER_USAGE                                                                           \
    (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |                   \
     VK_BUFFER_USAGE_TRANSFER_DST_BIT)

static stem_status vk_buffer_alloc(stem_context *ctx, stem_buffer *buf, size_t bytes)
{
    stem_vk_context *c = vk_ctx(ctx);
    vk_buffer *vb = calloc(1, sizeof *vb);
    if (!vb)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan buffer: out of host memory");
    stem_status st = vk_mem_create(c, bytes, c->host_buffers, BUFFER_USAGE, &vb->mem);
    if (st == STEM_OK) {
        /* Zeroed, so a fresh buffer reads the same on every backend. */
        if (vb->mem.mapped) {
            memset(vb->mem.mapped, 0, (size_t)vb->mem.size);
        } else {
            st = vk_begin(c); /* queued: later work on the queue comes after it */
            if (st == STEM_OK) {
                c->f.vkCmdFillBuffer(c->rec->cmd, vb->mem.buffer, 0, VK_WHOLE_SIZE, 0);
                st = vk_submit(c, 0);
            }
        }
        if (st != STEM_OK)
            vk_mem_destroy(c, &vb->mem);
    }
    if (st != STEM_OK) {
        free(vb);
        return st;
    }
    buf->impl = vb;
    buf->host = c->host_buffers ? vb->mem.mapped : NULL;
    return STEM_OK;
}

/* A GPU cannot use malloc'd memory in place: declined there. On a CPU
 * implementation the caller's bytes stay the truth and are mirrored into a
 * device buffer around every stage. */
static stem_status vk_buffer_wrap_host(stem_context *ctx, stem_buffer *buf, void *host,
                                       size_t bytes)
{
    stem_vk_context *c = vk_ctx(ctx);
    if (!c->host_buffers)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "vulkan: wrapping host memory is not supported on a GPU; use "
                              "stem_buffer_create");
    vk_buffer *vb = calloc(1, sizeof *vb);
    if (!vb)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan buffer: out of host memory");
    stem_status st = vk_mem_create(c, bytes, 1, BUFFER_USAGE, &vb->mem);
    if (st != STEM_OK) {
        free(vb);
        return st;
    }
    vb->user_host = host;
    buf->impl = vb;
    buf->host = host;
    return STEM_OK;
}

/* The caller's VkBuffer, bound in place from `offset`; never destroyed. */
static stem_status vk_buffer_wrap_native(stem_context *ctx, stem_buffer *buf, void *handle,
                                         size_t offset, size_t bytes)
{
    (void)ctx;
    (void)bytes;
    if (offset % 16)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: offset %zu is not a multiple of 16",
                              offset);
    vk_buffer *vb = calloc(1, sizeof *vb);
    if (!vb)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan buffer: out of host memory");
    vb->mem.buffer = (VkBuffer)handle;
    vb->mem.size = ((VkDeviceSize)bytes + 15) & ~(VkDeviceSize)15;
    vb->base = offset;
    vb->foreign = 1;
    buf->impl = vb;
    buf->host = NULL;
    return STEM_OK;
}

static void vk_context_native(const stem_context *ctx, stem_native_handles *h)
{
    const stem_vk_context *c = vk_ctx(ctx);
    h->instance = c->instance;
    h->device = c->phys;
    h->context = c->device;
    h->queue = c->queue;
    h->queue_family = c->queue_family;
}

static void vk_buffer_free(stem_context *ctx, stem_buffer *buf)
{
    vk_buffer *vb = (vk_buffer *)buf->impl;
    if (vb) {
        /* Queued stages may still use the memory: released once they are done. */
        if (!vb->foreign) {
            vk_wait_all(vk_ctx(ctx));
            vk_mem_destroy(vk_ctx(ctx), &vb->mem);
        }
        free(vb);
    }
    buf->impl = NULL;
    buf->host = NULL;
}

static stem_status vk_buffer_write(stem_context *ctx, stem_buffer *buf, size_t offset,
                                   const void *src, size_t bytes)
{
    vk_buffer *vb = (vk_buffer *)buf->impl;
    if (vb->user_host) {
        if (bytes)
            memmove((char *)vb->user_host + offset, src, bytes);
        return STEM_OK;
    }
    return vk_upload(vk_ctx(ctx), &vb->mem, vb->base + offset, src, bytes);
}

static stem_status vk_buffer_read(stem_context *ctx, stem_buffer *buf, size_t offset, void *dst,
                                  size_t bytes)
{
    vk_buffer *vb = (vk_buffer *)buf->impl;
    if (vb->user_host) {
        if (bytes)
            memmove(dst, (const char *)vb->user_host + offset, bytes);
        return STEM_OK;
    }
    return vk_download(vk_ctx(ctx), &vb->mem, vb->base + offset, dst, bytes);
}

/* ---------------------------------------------------------------- plans */

static stem_status vk_plan_check(const stem_context *ctx, const stem_attention_desc *desc,
                                 const stem_config *cfg)
{
    const stem_vk_context *c = vk_ctx(ctx);
    /* dtypes and head_dim: declared in the ops table, checked by the core */
    const int64_t d = desc->head_dim;
    uint32_t qt, kt;
    if (!vk_attention_tile(c, d, cfg->block_size, &qt, &kt))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "head_dim=%lld needs more shared memory than this device's %u "
                              "bytes (backend vulkan)",
                              (long long)d, c->shared_limit);
    stem_status st = vk_loop_budget(c, desc, cfg);
    if (st != STEM_OK)
        return st;
    /* Shaders index in 32 bits: phase sums and block lists must fit. */
    const int64_t n = (desc->kv_len + cfg->block_size - 1) / cfg->block_size; /* key blocks */
    const double flat = (double)desc->batch * (double)desc->num_q_heads * (double)n *
                        (double)cfg->stride * (double)d;
    const double lists = (double)desc->batch * (double)desc->num_q_heads * (double)n * (double)n;
    if (flat >= 4294967296.0 || lists >= 4294967296.0)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "problem too large for backend vulkan (32-bit shader indices): "
                              "B*Hq*n*S*d=%.0f, B*Hq*n*n=%.0f",
                              flat, lists);
    return STEM_OK;
}

static stem_status vk_plan_init(stem_plan *plan)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
    vk_plan *p = calloc(1, sizeof *p);
    if (!p)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "vulkan plan: out of memory");
    vk_attention_tile(c, plan->desc.head_dim, plan->cfg.block_size, &p->qt, &p->kt);
    const size_t bytes = (size_t)plan->n_blocks * sizeof(int32_t);
    stem_status st = vk_mem_create(c, bytes, c->host_buffers, BUFFER_USAGE, &p->budget);
    if (st == STEM_OK)
        st = vk_upload(c, &p->budget, 0, plan->budget, bytes);
    if (st != STEM_OK) {
        vk_mem_destroy(c, &p->budget);
        free(p);
        return st;
    }
    plan->impl = p;
    return STEM_OK;
}

static void vk_plan_fini(stem_plan *plan)
{
    vk_plan *p = (vk_plan *)plan->impl;
    if (p) {
        vk_wait_all(vk_ctx(plan->ctx)); /* queued selections read the budget */
        vk_mem_destroy(vk_ctx(plan->ctx), &p->budget);
        free(p);
    }
    plan->impl = NULL;
}

static stem_status vk_synchronize(stem_context *ctx)
{
    return vk_wait_all(vk_ctx(ctx));
}

const stem_backend_ops stem_vulkan_backend_ops = {
    .kind = STEM_BACKEND_VULKAN,
    .name = "vulkan",
    .probe = vk_probe,
    .context_init = vk_context_init,
    .context_fini = vk_context_fini,
    .buffer_alloc = vk_buffer_alloc,
    .buffer_wrap_host = vk_buffer_wrap_host,
    .buffer_wrap_native = vk_buffer_wrap_native,
    .context_native = vk_context_native,
    .buffer_free = vk_buffer_free,
    .buffer_write = vk_buffer_write,
    .buffer_read = vk_buffer_read,
    .plan_init = vk_plan_init,
    .plan_fini = vk_plan_fini,
    .plan_check = vk_plan_check,
    .score = stem_vk_score,
    .select = stem_vk_select,
    .attention = stem_vk_attention,
    .synchronize = vk_synchronize,
    .caps = STEM_CAP_Q_OFFSET | STEM_CAP_VSTATS | STEM_CAP_LSE | STEM_CAP_VARLEN | STEM_CAP_PAGED,
    .copy_rects = stem_vk_copy_rects,
    .dtypes = (1u << STEM_DTYPE_F32) | (1u << STEM_DTYPE_F16) | (1u << STEM_DTYPE_BF16),
    .head_dim_min = 8,
    .head_dim_max = 256,
    .head_dim_step = 8,
};
