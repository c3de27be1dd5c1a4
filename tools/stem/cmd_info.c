/* stem info: what this libstem build can run on, and why not elsewhere. */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "tool.h"

static void help(void) {
    puts("usage: stem info [--json]\n"
         "Lists every backend (built? usable? why not?) and every device, with the one\n"
         "STEM_DEVICE_AUTO picks. Environment: STEM_DISABLE_<BACKEND>=1, STEM_CPU_MAX_ISA.");
}

static const char *backend_state(const stem_backend_info *bi) {
    return !bi->compiled ? "not built" : bi->available ? "available" : "unavailable";
}

/* The global index STEM_DEVICE_AUTO resolves to, or -1. */
static int auto_device(uint32_t count) {
    stem_context *ctx = NULL;
    stem_device_info di;
    stem_device_info_init(&di);
    if (stem_context_create(NULL, &ctx) != STEM_OK)
        return -1;
    int found = -1;
    if (stem_context_get_device(ctx, &di) == STEM_OK) {
        for (uint32_t d = 0; d < count && found < 0; d++) {
            stem_device_info x;
            stem_device_info_init(&x);
            if (stem_device_get_info(d, &x) == STEM_OK && x.backend == di.backend &&
                x.backend_index == di.backend_index)
                found = (int)d;
        }
    }
    stem_context_destroy(ctx);
    return found;
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return help(), 0;
        else
            return tool_error("info: unknown option '%s'", argv[i]), 2;
    }
    const int nb = tool_backend_count();
    stem_backend_info bi[TOOL_MAX_BACKENDS];
    for (int b = 0; b < nb; b++) {
        stem_backend_info_init(&bi[b]);
        stem_status st = stem_backend_query((stem_backend)b, &bi[b]);
        if (st != STEM_OK)
            return tool_fail(st, "stem_backend_query");
    }
    uint32_t count = 0;
    stem_status st = stem_device_count(&count);
    if (st != STEM_OK)
        return tool_fail(st, "stem_device_count");
    int best = auto_device(count);

    if (json) {
        printf("{\n  \"libstem\": \"%s\",\n  \"backends\": [", stem_version_string());
        for (int b = 0; b < nb; b++) {
            printf("%s\n    {\"name\": \"%s\", \"compiled\": %s, \"available\": %s, "
                   "\"device_count\": %u, \"reason\": ",
                   b ? "," : "", stem_backend_name((stem_backend)b),
                   bi[b].compiled ? "true" : "false", bi[b].available ? "true" : "false",
                   (unsigned)bi[b].device_count);
            tool_json_string(stdout, bi[b].reason);
            printf("}");
        }
        printf("\n  ],\n  \"auto_device\": %d,\n  \"devices\": [", best);
    } else {
        printf("libstem %s\n\nbackends:\n", stem_version_string());
        for (int b = 0; b < nb; b++) {
            printf("  %-7s %-12s", stem_backend_name((stem_backend)b), backend_state(&bi[b]));
            if (bi[b].available)
                printf("%u device%s\n", (unsigned)bi[b].device_count,
                       bi[b].device_count == 1 ? "" : "s");
            else
                printf("%s\n", bi[b].reason[0] ? bi[b].reason : "-");
        }
        printf("\ndevices:\n");
        if (count == 0)
            printf("  (none)\n");
    }
    for (uint32_t d = 0; d < count; d++) {
        stem_device_info di;
        stem_device_info_init(&di);
        if ((st = stem_device_get_info(d, &di)) != STEM_OK)
            return tool_fail(st, "stem_device_get_info");
        double gib = (double)di.memory_bytes / (1024.0 * 1024.0 * 1024.0);
        if (json) {
            printf("%s\n    {\"index\": %u, \"backend\": \"%s\", \"backend_index\": %u, "
                   "\"is_gpu\": %s, \"memory_bytes\": %llu, \"compute_units\": %u, \"name\": ",
                   d ? "," : "", (unsigned)d, stem_backend_name(di.backend),
                   (unsigned)di.backend_index, di.is_gpu ? "true" : "false",
                   (unsigned long long)di.memory_bytes, (unsigned)di.compute_units);
            tool_json_string(stdout, di.name);
            printf(", \"detail\": ");
            tool_json_string(stdout, di.detail);
            printf("}");
        } else {
            printf("  [%u]%s %s:%u  %s\n", (unsigned)d, (int)d == best ? "*" : " ",
                   stem_backend_name(di.backend), (unsigned)di.backend_index, di.name);
            printf("        %s, %u %s", di.is_gpu ? "GPU" : "CPU", (unsigned)di.compute_units,
                   di.is_gpu ? "compute units" : "cores");
            if (di.memory_bytes)
                printf(", %.1f GiB", gib);
            if (di.detail[0])
                printf(", %s", di.detail);
            printf("\n");
        }
    }
    if (json)
        printf("\n  ]\n}\n");
    else if (best >= 0)
        printf("\n* = default device (STEM_DEVICE_AUTO)\n");
    return 0;
}
