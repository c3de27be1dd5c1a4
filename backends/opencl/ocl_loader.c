/* OpenCL backend: the ICD loader opened at run time, so libstem loads and
 * runs its other backends on machines without it. STEM_OPENCL_LIBRARY names
 * another library (a vendor runtime or a test stub). */
#include "ocl_common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static stem_ocl_api g_api;
static const stem_ocl_api *g_loaded;
static char g_reason[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void load_once(void)
{
    const char *env = getenv("STEM_OPENCL_LIBRARY");
    const char *name = env && *env ? env : "libOpenCL.so.1";
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(g_reason, sizeof g_reason, "cannot open the OpenCL loader %s: %s", name,
                 why ? why : "unknown error");
        return;
    }
    /* Through a void* so ISO C sees no function/object pointer cast. */
#define STEM_OCL_LOAD(fn)                                                                          \
    {                                                                                              \
        void *sym = dlsym(lib, #fn);                                                               \
        if (!sym) {                                                                                \
            snprintf(g_reason, sizeof g_reason, "%s lacks %s (OpenCL 1.2 required)", name, #fn);   \
            dlclose(lib);                                                                          \
            return;                                                                                \
        }                                                                                          \
        memcpy(&g_api.fn, &sym, sizeof sym);                                                       \
    }
    STEM_OCL_FUNCTIONS(STEM_OCL_LOAD)
#undef STEM_OCL_LOAD
    g_loaded = &g_api; /* the library stays open for the process's lifetime */
}

const stem_ocl_api *stem_ocl_api_get(const char **reason)
{
    pthread_once(&g_once, load_once);
    if (!g_loaded && reason)
        *reason = g_reason;
    return g_loaded;
}

uint32_t stem_ocl_enumerate(const stem_ocl_api *cl, stem_ocl_device *out, uint32_t max)
{
    cl_platform_id platforms[16];
    cl_uint np = 0;
    if (cl->clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS)
        return 0;
    if (np > 16)
        np = 16;
    uint32_t count = 0;
    for (cl_uint p = 0; p < np && count < max; p++) {
        cl_device_id devs[STEM_MAX_DEVICES_PER_BACKEND];
        cl_uint nd = 0;
        if (cl->clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, STEM_MAX_DEVICES_PER_BACKEND,
                               devs, &nd) != CL_SUCCESS)
            continue; /* CL_DEVICE_NOT_FOUND: a platform without devices */
        if (nd > STEM_MAX_DEVICES_PER_BACKEND)
            nd = STEM_MAX_DEVICES_PER_BACKEND;
        for (cl_uint d = 0; d < nd && count < max; d++) {
            out[count].platform = platforms[p];
            out[count].device = devs[d];
            count++;
        }
    }
    return count;
}

const char *stem_ocl_error_name(cl_int err)
{
    switch (err) {
#define N(x) case x: return #x;
        N(CL_SUCCESS) N(CL_DEVICE_NOT_FOUND) N(CL_DEVICE_NOT_AVAILABLE)
        N(CL_COMPILER_NOT_AVAILABLE) N(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        N(CL_OUT_OF_RESOURCES) N(CL_OUT_OF_HOST_MEMORY) N(CL_BUILD_PROGRAM_FAILURE)
        N(CL_INVALID_VALUE) N(CL_INVALID_DEVICE) N(CL_INVALID_CONTEXT)
        N(CL_INVALID_COMMAND_QUEUE) N(CL_INVALID_MEM_OBJECT) N(CL_INVALID_BINARY)
        N(CL_INVALID_BUILD_OPTIONS) N(CL_INVALID_PROGRAM) N(CL_INVALID_PROGRAM_EXECUTABLE)
        N(CL_INVALID_KERNEL_NAME) N(CL_INVALID_KERNEL) N(CL_INVALID_ARG_INDEX)
        N(CL_INVALID_ARG_VALUE) N(CL_INVALID_ARG_SIZE) N(CL_INVALID_KERNEL_ARGS)
        N(CL_INVALID_WORK_DIMENSION) N(CL_INVALID_WORK_GROUP_SIZE)
        N(CL_INVALID_WORK_ITEM_SIZE) N(CL_INVALID_GLOBAL_OFFSET) N(CL_INVALID_BUFFER_SIZE)
        N(CL_INVALID_GLOBAL_WORK_SIZE) N(CL_INVALID_OPERATION)
        N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
#undef N
    default: return "unknown OpenCL error";
    }
}

stem_status stem_ocl_fail(cl_int err, const char *what)
{
    const stem_status st = err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                                   err == CL_OUT_OF_RESOURCES || err == CL_INVALID_BUFFER_SIZE
                               ? STEM_ERR_DEVICE_OUT_OF_MEMORY
                               : STEM_ERR_BACKEND_API;
    return stem_set_error(st, "opencl: %s failed: %s (%d)", what, stem_ocl_error_name(err),
                          (int)err);
}
