/* STEM_TEST_ONLY=cpu,opencl for the hardening tests, as in the conformance
 * suite: 1 when the device's backend is listed (or nothing is). */
#ifndef STEM_HARDENING_DEVICE_FILTER_H
#define STEM_HARDENING_DEVICE_FILTER_H

#include <stdlib.h>
#include <string.h>

#include "stem.h"

static inline int hardening_device_selected(const stem_device_info *info)
{
    const char *s = getenv("STEM_TEST_ONLY");
    if (!s || !*s)
        return 1;
    const char *name = stem_backend_name(info->backend);
    const size_t len = strlen(name);
    for (const char *p = s; (p = strstr(p, name)) != NULL; p += len)
        if ((p == s || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
            return 1;
    return 0;
}

#endif
