#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"

float *weights_load_rows(const gguf_file *f, const char *name, int64_t ne0, int64_t rows,
                         char *err, size_t err_len)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        snprintf(err, err_len, "tensor %s missing", name);
        return NULL;
    }
    if ((int64_t)t->ne[0] != ne0 || (int64_t)(t->ne[1] * t->ne[2] * t->ne[3]) != rows) {
        snprintf(err, err_len, "tensor %s has shape [%llu, %llu], expected [%lld, %lld]", name,
                 (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (long long)ne0,
                 (long long)rows);
        return NULL;
    }
    uint64_t rb = ggml_type_row_bytes(t->type, (uint64_t)ne0);
    if (!t->data || rb == 0) {
        snprintf(err, err_len, "tensor %s: type %u unsupported", name, t->type);
        return NULL;
    }
    float *w = malloc((size_t)(ne0 * rows) * sizeof(float));
    if (!w) {
        snprintf(err, err_len, "out of memory for %s", name);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        dequantize_row(t->type, t->data + (uint64_t)r * rb, w + r * ne0, (uint64_t)ne0);
    return w;
}

void weights_note_type(char *types, size_t cap, const gguf_file *f, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return;
    const char *tn = ggml_type_name(t->type);
    if (strstr(types, tn)) return;
    size_t used = strlen(types);
    snprintf(types + used, cap - used, "%s%s", used ? "+" : "", tn);
}

/* Packs the row-concatenation of up to three [rows_i][k] tensors. */
int weights_pack_stack(const gguf_file *f, packed_matrix *p, int64_t k, const char *const *names,
                       const int64_t *rows, int count, char *err, size_t err_len)
{
    int64_t total = 0;
    for (int i = 0; i < count; i++) total += rows[i];
    float *all = malloc((size_t)(total * k) * sizeof(float));
    if (!all) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    int64_t at = 0;
    for (int i = 0; i < count; i++) {
        float *w = weights_load_rows(f, names[i], k, rows[i], err, err_len);
        if (!w) {
            free(all);
            return -1;
        }
        memcpy(all + at * k, w, (size_t)(rows[i] * k) * sizeof(float));
        at += rows[i];
        free(w);
    }
    int rc = packed_matrix_init(p, all, total, k);
    free(all);
    if (rc) snprintf(err, err_len, "out of memory packing weights");
    return rc;
}
