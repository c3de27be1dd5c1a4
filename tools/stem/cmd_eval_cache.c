/* stem eval: the dense hidden states cached per (model, token ids, length),
 * and the hashes that key them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd_eval.h"

uint64_t eval_fnv1a(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

int eval_mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

int eval_load_cache(const char *path, float *hid, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(hid, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    return got == bytes && extra == EOF ? 0 : -1;
}

void eval_save_cache(const char *path, const float *hid, size_t bytes)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    int ok = fwrite(hid, 1, bytes, f) == bytes;
    ok &= fclose(f) == 0;
    if (ok) rename(tmp, path);
    else remove(tmp);
}
