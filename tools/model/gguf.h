/* Minimal reader of GGUF v2/v3 files (the llama.cpp model format): the
 * key/value metadata and the tensor table of a memory-mapped file. */
#ifndef STEM_MODEL_GGUF_H
#define STEM_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum gguf_value_type {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12
};

/* ggml tensor types this reader can dequantise */
enum ggml_type {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q8_0 = 8,
    GGML_Q4_K = 12, GGML_Q6_K = 14
};

typedef struct gguf_kv {
    const char *key;      /* points into the mapping, not NUL-terminated */
    uint64_t key_len;
    uint32_t type;
    uint32_t array_type;  /* for GGUF_ARRAY */
    uint64_t array_len;
    const uint8_t *value; /* raw bytes of the value (array: first element) */
} gguf_kv;

typedef struct gguf_tensor {
    char name[96];
    uint32_t n_dims;
    uint64_t ne[4];       /* ne[0] is the contiguous (inner) dimension */
    uint32_t type;
    const uint8_t *data;
} gguf_tensor;

typedef struct gguf_file {
    uint8_t *map;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
} gguf_file;

/* 0 on success; on failure err (if any) holds the reason. */
int gguf_open(const char *path, gguf_file *f, char *err, size_t err_len);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* Scalar getters: return def when missing or of another kind. */
int64_t gguf_get_int(const gguf_file *f, const char *key, int64_t def);
double gguf_get_float(const gguf_file *f, const char *key, double def);
/* Copies a string value (NUL-terminated, truncated to cap); 0 if found. */
int gguf_get_string(const gguf_file *f, const char *key, char *out, size_t cap);

/* Iterates the strings of a string array: call with *pos = the kv's value,
 * returns the string's bytes and length and advances *pos. */
const char *gguf_next_string(const uint8_t **pos, uint64_t *len);

#endif
