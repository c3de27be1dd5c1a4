#include "gguf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct cursor {
    const uint8_t *p, *end;
    int bad;
} cursor;

static const uint8_t *take(cursor *c, uint64_t n)
{
    if (c->bad || (uint64_t)(c->end - c->p) < n) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *r = c->p;
    c->p += n;
    return r;
}

static uint64_t rd_u64(cursor *c)
{
    uint64_t v = 0;
    const uint8_t *p = take(c, 8);
    if (p) memcpy(&v, p, 8);
    return v;
}

static uint32_t rd_u32(cursor *c)
{
    uint32_t v = 0;
    const uint8_t *p = take(c, 4);
    if (p) memcpy(&v, p, 4);
    return v;
}

static uint64_t scalar_size(uint32_t type)
{
    switch (type) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

/* Skips one value of the given type (strings and nested arrays included). */
static void skip_value(cursor *c, uint32_t type, int depth)
{
    if (type == GGUF_STRING) {
        uint64_t n = rd_u64(c);
        take(c, n);
    } else if (type == GGUF_ARRAY) {
        uint32_t at = rd_u32(c);
        uint64_t n = rd_u64(c);
        if (depth > 4) { c->bad = 1; return; }
        uint64_t es = scalar_size(at);
        if (es) {
            if (n > UINT64_MAX / es) { c->bad = 1; return; }
            take(c, n * es);
        } else {
            for (uint64_t i = 0; i < n && !c->bad; i++) skip_value(c, at, depth + 1);
        }
    } else {
        uint64_t es = scalar_size(type);
        if (!es) c->bad = 1;
        else take(c, es);
    }
}

static uint64_t ggml_row_bytes(uint32_t type, uint64_t ne0, int *ok)
{
    *ok = 1;
    switch (type) {
    case GGML_F32: return ne0 * 4;
    case GGML_F16: return ne0 * 2;
    case GGML_Q4_0: if (ne0 % 32) break; return ne0 / 32 * 18;
    case GGML_Q4_1: if (ne0 % 32) break; return ne0 / 32 * 20;
    case GGML_Q5_0: if (ne0 % 32) break; return ne0 / 32 * 22;
    case GGML_Q8_0: if (ne0 % 32) break; return ne0 / 32 * 34;
    case GGML_Q4_K: if (ne0 % 256) break; return ne0 / 256 * 144;
    case GGML_Q6_K: if (ne0 % 256) break; return ne0 / 256 * 210;
    default: break;
    }
    *ok = 0;
    return 0;
}

int gguf_open(const char *path, gguf_file *f, char *err, size_t err_len)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open %s", path);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 24) {
        close(fd);
        snprintf(err, err_len, "%s: not a GGUF file (too small)", path);
        return -1;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, err_len, "cannot map %s", path);
        return -1;
    }
    f->map = m;
    f->size = (size_t)st.st_size;
    cursor c = {f->map, f->map + f->size, 0};
    const uint8_t *magic = take(&c, 4);
    if (memcmp(magic, "GGUF", 4) != 0) {
        snprintf(err, err_len, "%s: bad magic", path);
        goto fail;
    }
    f->version = rd_u32(&c);
    if (f->version < 2 || f->version > 3) {
        snprintf(err, err_len, "%s: GGUF version %u unsupported", path, f->version);
        goto fail;
    }
    f->n_tensors = rd_u64(&c);
    f->n_kv = rd_u64(&c);
    if (f->n_kv > 1u << 20 || f->n_tensors > 1u << 20) {
        snprintf(err, err_len, "%s: implausible counts", path);
        goto fail;
    }
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < f->n_kv && !c.bad; i++) {
        gguf_kv *kv = &f->kv[i];
        kv->key_len = rd_u64(&c);
        kv->key = (const char *)take(&c, kv->key_len);
        kv->type = rd_u32(&c);
        if (kv->type == GGUF_ARRAY) {
            kv->array_type = rd_u32(&c);
            kv->array_len = rd_u64(&c);
            kv->value = c.p;
            /* rewind over the array header so skip_value sees it whole */
            c.p -= 12;
            skip_value(&c, GGUF_ARRAY, 0);
        } else {
            kv->value = c.p;
            skip_value(&c, kv->type, 0);
        }
    }
    for (uint64_t i = 0; i < f->n_tensors && !c.bad; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t nlen = rd_u64(&c);
        const uint8_t *name = take(&c, nlen);
        if (!name || nlen >= sizeof t->name) {
            c.bad = 1;
            break;
        }
        memcpy(t->name, name, nlen);
        t->n_dims = rd_u32(&c);
        if (t->n_dims < 1 || t->n_dims > 4) { c.bad = 1; break; }
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) t->ne[d] = rd_u64(&c);
        t->type = rd_u32(&c);
        t->data = (const uint8_t *)(uintptr_t)rd_u64(&c); /* offset for now */
    }
    if (c.bad) {
        snprintf(err, err_len, "%s: truncated or malformed header", path);
        goto fail;
    }
    uint64_t align = (uint64_t)gguf_get_int(f, "general.alignment", 32);
    if (align == 0 || (align & (align - 1))) align = 32;
    uint64_t base = (uint64_t)(c.p - f->map);
    base = (base + align - 1) / align * align;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        int ok;
        uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        uint64_t bytes = ggml_row_bytes(t->type, t->ne[0], &ok) * rows;
        uint64_t off = base + (uint64_t)(uintptr_t)t->data;
        if (ok && (off > f->size || bytes > f->size - off)) {
            snprintf(err, err_len, "%s: tensor %s lies outside the file", path, t->name);
            goto fail;
        }
        t->data = ok ? f->map + off : NULL; /* NULL: a type we cannot read */
    }
    return 0;
fail:
    gguf_close(f);
    return -1;
}

void gguf_close(gguf_file *f)
{
    if (f->map) munmap(f->map, f->size);
    free(f->kv);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    size_t n = strlen(key);
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key_len == n && memcmp(f->kv[i].key, key, n) == 0) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

int64_t gguf_get_int(const gguf_file *f, const char *key, int64_t def)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return def;
    const uint8_t *p = kv->value;
    switch (kv->type) {
    case GGUF_U8: return p[0];
    case GGUF_I8: return (int8_t)p[0];
    case GGUF_BOOL: return p[0] != 0;
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }
    case GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return def;
    }
}

double gguf_get_float(const gguf_file *f, const char *key, double def)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return def;
    if (kv->type == GGUF_F32) { float v; memcpy(&v, kv->value, 4); return v; }
    if (kv->type == GGUF_F64) { double v; memcpy(&v, kv->value, 8); return v; }
    return (double)gguf_get_int(f, key, (int64_t)def);
}

int gguf_get_string(const gguf_file *f, const char *key, char *out, size_t cap)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv || kv->type != GGUF_STRING || cap == 0) return -1;
    const uint8_t *p = kv->value;
    uint64_t len;
    const char *s = gguf_next_string(&p, &len);
    size_t n = len < cap - 1 ? (size_t)len : cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

const char *gguf_next_string(const uint8_t **pos, uint64_t *len)
{
    memcpy(len, *pos, 8);
    const char *s = (const char *)(*pos + 8);
    *pos += 8 + *len;
    return s;
}
