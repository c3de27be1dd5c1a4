/* Vulkan backend: dlopen of the loader and entry-point tables. */
#include "vk_loader.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t loader_once = PTHREAD_ONCE_INIT;
static void *loader_lib;
static PFN_vkGetInstanceProcAddr loader_gipa;
static char loader_why[200];

static void open_once(void)
{
    const char *env = getenv("STEM_VULKAN_LIBRARY");
    const char *name = env && *env ? env : "libvulkan.so.1";
    loader_lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!loader_lib) {
        snprintf(loader_why, sizeof loader_why, "%s not found", name);
        return;
    }
    void *sym = dlsym(loader_lib, "vkGetInstanceProcAddr");
    if (!sym) {
        snprintf(loader_why, sizeof loader_why, "%s has no vkGetInstanceProcAddr", name);
        dlclose(loader_lib);
        loader_lib = NULL;
        return;
    }
    memcpy(&loader_gipa, &sym, sizeof loader_gipa); /* object -> function pointer */
}

void *stem_vk_open_loader(PFN_vkGetInstanceProcAddr *gipa, char *why, size_t why_size)
{
    pthread_once(&loader_once, open_once);
    if (!loader_lib) {
        snprintf(why, why_size, "%s", loader_why);
        return NULL;
    }
    *gipa = loader_gipa;
    return loader_lib;
}

int stem_vk_load_instance(stem_vk_fns *f, PFN_vkGetInstanceProcAddr gipa, VkInstance instance,
                          char *why, size_t why_size)
{
    f->vkGetInstanceProcAddr = gipa;
#define LOAD_GLOBAL(name)                                                                      \
    if (!f->name)                                                                              \
        f->name = (PFN_##name)gipa(NULL, #name);
    STEM_VK_GLOBAL_FNS(LOAD_GLOBAL)
#undef LOAD_GLOBAL
    if (!instance)
        return f->vkCreateInstance != NULL || (snprintf(why, why_size, "no vkCreateInstance"), 0);
#define LOAD_INSTANCE(name)                                                                    \
    f->name = (PFN_##name)gipa(instance, #name);                                               \
    if (!f->name) {                                                                            \
        snprintf(why, why_size, "Vulkan loader lacks %s", #name);                             \
        return 0;                                                                              \
    }
    STEM_VK_INSTANCE_FNS(LOAD_INSTANCE)
#undef LOAD_INSTANCE
    return 1;
}

int stem_vk_load_device(stem_vk_fns *f, VkDevice device, char *why, size_t why_size)
{
#define LOAD_DEVICE(name)                                                                      \
    f->name = (PFN_##name)f->vkGetDeviceProcAddr(device, #name);                               \
    if (!f->name) {                                                                            \
        snprintf(why, why_size, "Vulkan device lacks %s", #name);                             \
        return 0;                                                                              \
    }
    STEM_VK_DEVICE_FNS(LOAD_DEVICE)
#undef LOAD_DEVICE
    return 1;
}

const char *stem_vk_result_name(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult (unlisted)";
    }
}
