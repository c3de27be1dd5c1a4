/* Status names and the thread-local error message. */
#include "stem_internal.h"

#include <stdio.h>

static _Thread_local char stem_error_message[1024];

stem_status stem_set_error(stem_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(stem_error_message, sizeof stem_error_message, fmt, ap);
    va_end(ap);
    return status;
}

stem_status stem_check_struct_size(size_t have, size_t need, const char *fn, const char *what,
                                   const char *init)
{
    if (have >= need)
        return STEM_OK;
    return stem_set_error(STEM_ERR_VERSION_MISMATCH,
                          "%s: %s->struct_size=%zu, expected >= %zu (call %s)", fn, what, have,
                          need, init);
}

void stem_clear_error(void) { stem_error_message[0] = '\0'; }

const char *stem_last_error(void) { return stem_error_message; }

const char *stem_status_name(stem_status status)
{
    switch (status) {
    case STEM_OK: return "STEM_OK";
    case STEM_ERR_INVALID_ARGUMENT: return "STEM_ERR_INVALID_ARGUMENT";
    case STEM_ERR_UNSUPPORTED: return "STEM_ERR_UNSUPPORTED";
    case STEM_ERR_OUT_OF_MEMORY: return "STEM_ERR_OUT_OF_MEMORY";
    case STEM_ERR_DEVICE_OUT_OF_MEMORY: return "STEM_ERR_DEVICE_OUT_OF_MEMORY";
    case STEM_ERR_BACKEND_UNAVAILABLE: return "STEM_ERR_BACKEND_UNAVAILABLE";
    case STEM_ERR_KERNEL_BUILD: return "STEM_ERR_KERNEL_BUILD";
    case STEM_ERR_DEVICE_LOST: return "STEM_ERR_DEVICE_LOST";
    case STEM_ERR_BACKEND_API: return "STEM_ERR_BACKEND_API";
    case STEM_ERR_VERSION_MISMATCH: return "STEM_ERR_VERSION_MISMATCH";
    case STEM_ERR_INTERNAL: return "STEM_ERR_INTERNAL";
    }
    return "STEM_ERR_UNKNOWN";
}

#define STEM_STR2(x) #x
#define STEM_STR(x) STEM_STR2(x)
const char *stem_version_string(void)
{
    return STEM_STR(STEM_VERSION_MAJOR) "." STEM_STR(STEM_VERSION_MINOR) "." STEM_STR(
        STEM_VERSION_PATCH);
}
