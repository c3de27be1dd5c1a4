/* Vulkan backend: the loader opened at run time and the entry points we use.
 * Vulkan headers are needed at build time only (never in stem.h). */
#ifndef STEM_VK_LOADER_H
#define STEM_VK_LOADER_H

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

/* Entry points that need no instance. */
#define STEM_VK_GLOBAL_FNS(X)                                                                  \
    X(vkCreateInstance)                                                                        \
    X(vkEnumerateInstanceVersion)

/* Instance-level entry points. */
#define STEM_VK_INSTANCE_FNS(X)                                                                \
    X(vkDestroyInstance)                                                                       \
    X(vkEnumeratePhysicalDevices)                                                              \
    X(vkGetPhysicalDeviceProperties)                                                           \
    X(vkGetPhysicalDeviceProperties2)                                                          \
    X(vkGetPhysicalDeviceFeatures2)                                                            \
    X(vkGetPhysicalDeviceMemoryProperties)                                                     \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                                                \
    X(vkEnumerateDeviceExtensionProperties)                                                    \
    X(vkCreateDevice)                                                                          \
    X(vkGetDeviceProcAddr)

/* Device-level entry points. */
#define STEM_VK_DEVICE_FNS(X)                                                                  \
    X(vkDestroyDevice)                                                                         \
    X(vkGetDeviceQueue)                                                                        \
    X(vkCreateBuffer)                                                                          \
    X(vkDestroyBuffer)                                                                         \
    X(vkGetBufferMemoryRequirements)                                                           \
    X(vkAllocateMemory)                                                                        \
    X(vkFreeMemory)                                                                            \
    X(vkBindBufferMemory)                                                                      \
    X(vkMapMemory)                                                                             \
    X(vkUnmapMemory)                                                                           \
    X(vkCreateShaderModule)                                                                    \
    X(vkDestroyShaderModule)                                                                   \
    X(vkCreatePipelineCache)                                                                   \
    X(vkDestroyPipelineCache)                                                                  \
    X(vkGetPipelineCacheData)                                                                  \
    X(vkCreateComputePipelines)                                                                \
    X(vkDestroyPipeline)                                                                       \
    X(vkCreatePipelineLayout)                                                                  \
    X(vkDestroyPipelineLayout)                                                                 \
    X(vkCreateDescriptorSetLayout)                                                             \
    X(vkDestroyDescriptorSetLayout)                                                            \
    X(vkCreateDescriptorPool)                                                                  \
    X(vkDestroyDescriptorPool)                                                                 \
    X(vkResetDescriptorPool)                                                                   \
    X(vkAllocateDescriptorSets)                                                                \
    X(vkUpdateDescriptorSets)                                                                  \
    X(vkCreateCommandPool)                                                                     \
    X(vkDestroyCommandPool)                                                                    \
    X(vkResetCommandPool)                                                                      \
    X(vkAllocateCommandBuffers)                                                                \
    X(vkBeginCommandBuffer)                                                                    \
    X(vkEndCommandBuffer)                                                                      \
    X(vkCmdBindPipeline)                                                                       \
    X(vkCmdBindDescriptorSets)                                                                 \
    X(vkCmdDispatch)                                                                           \
    X(vkCmdPipelineBarrier)                                                                    \
    X(vkCmdCopyBuffer)                                                                         \
    X(vkCmdFillBuffer)                                                                         \
    X(vkCreateFence)                                                                           \
    X(vkDestroyFence)                                                                          \
    X(vkResetFences)                                                                           \
    X(vkWaitForFences)                                                                         \
    X(vkQueueSubmit)                                                                           \
    X(vkDeviceWaitIdle)

#define STEM_VK_DECLARE(name) PFN_##name name;
typedef struct stem_vk_fns {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    STEM_VK_GLOBAL_FNS(STEM_VK_DECLARE)
    STEM_VK_INSTANCE_FNS(STEM_VK_DECLARE)
    STEM_VK_DEVICE_FNS(STEM_VK_DECLARE)
} stem_vk_fns;
#undef STEM_VK_DECLARE

/* Opens the loader (STEM_VULKAN_LIBRARY or libvulkan.so.1) once per process
 * and fills the global entry points; NULL with a reason on failure. The
 * returned library handle stays open for the life of the process. */
void *stem_vk_open_loader(PFN_vkGetInstanceProcAddr *gipa, char *why, size_t why_size);

/* Global + instance entry points for `instance`; 0 if one is missing (name in why). */
int stem_vk_load_instance(stem_vk_fns *f, PFN_vkGetInstanceProcAddr gipa, VkInstance instance,
                          char *why, size_t why_size);
/* Device entry points for `device`; 0 if one is missing. */
int stem_vk_load_device(stem_vk_fns *f, VkDevice device, char *why, size_t why_size);

/* "VK_ERROR_OUT_OF_DEVICE_MEMORY" etc. */
const char *stem_vk_result_name(VkResult r);

#endif /* STEM_VK_LOADER_H */
