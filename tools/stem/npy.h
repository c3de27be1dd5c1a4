/* Minimal, strict .npy reader/writer for the stem tool.
 *
 * Reads format 1.0, 2.0 and 3.0 headers with little-endian '<f4', '<f2',
 * '<u2' (raw 16-bit words, e.g. bf16) and '<i4', C order only, at most
 * NPY_MAX_DIMS dimensions. Every size in the file is treated as hostile:
 * the header is parsed with bounds checks, element counts are checked for
 * overflow and must match the bytes actually present, and anything
 * malformed is rejected with a message instead of a crash. */
#ifndef STEM_TOOL_NPY_H
#define STEM_TOOL_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8
/* Longest header accepted (numpy itself refuses headers over 10000 bytes
 * by default); keeps a hostile v2/v3 length from driving an allocation. */
#define NPY_MAX_HEADER_BYTES (1u << 20)

typedef enum npy_dtype {
    NPY_F32 = 0, /* '<f4' */
    NPY_F16 = 1, /* '<f2' */
    NPY_U16 = 2, /* '<u2' (bf16 is stored this way: numpy has no bf16) */
    NPY_I32 = 3  /* '<i4' */
} npy_dtype;

typedef struct npy_array {
    npy_dtype dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count;  /* product of shape (1 for a 0-d array) */
    size_t nbytes; /* count * element size */
    void *data;    /* malloc'd, values in host byte order; NULL after a header-only parse */
} npy_array;

size_t npy_dtype_size(npy_dtype dtype);
const char *npy_dtype_descr(npy_dtype dtype); /* "<f4", ... */

/* Parses the magic, version, header length and header dict at the start of
 * buf (len bytes available). On success fills everything in out but data
 * and sets *data_offset to where the array bytes begin. Returns 0, or -1
 * with a message in err. When the header is incomplete, -1 and
 * *need (if non-NULL) says how many bytes the full header needs. */
int npy_parse_header(const uint8_t *buf, size_t len, npy_array *out, size_t *data_offset,
                     size_t *need, char *err, size_t errlen);

/* A whole .npy image in memory (the fuzzing entry point): the data must
 * follow the header and fill the rest of buf exactly. out->data is a fresh
 * copy; release it with npy_free. */
int npy_parse_buffer(const void *buf, size_t len, npy_array *out, char *err, size_t errlen);

/* Reads a file; sizes are checked against the file's real length before
 * anything is allocated. */
int npy_read_file(const char *path, npy_array *out, char *err, size_t errlen);

/* Writes a format 1.0 file (2.0 if the header were ever too long). data
 * holds the values in host byte order. */
int npy_write_file(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, char *err, size_t errlen);

void npy_free(npy_array *a);

/* Parses buf and discards the result; always returns 0. For fuzzers: build
 * npy.c with -DSTEM_NPY_LIBFUZZER to get LLVMFuzzerTestOneInput too. */
int npy_fuzz_one(const uint8_t *data, size_t size);

#endif
