/*
 * Fuzz target for the stem tool's .npy reader (tools/stem/npy.c).
 *
 * Beyond "no crash, no leak, no out-of-bounds read", every accepted image
 * must be self-consistent: count is the product of the shape, nbytes is
 * count times the element size and exactly the bytes after the header,
 * the data is a copy of them, and the header parses on its own (with the
 * same result) from the bytes before the data. Every shorter prefix of an
 * accepted image is rejected.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, what)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_npy: %s:%d: %s (%s)\n", __FILE__, __LINE__, what, #cond);    \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_array a;
    char err[256];
    err[0] = '\0';
    if (npy_parse_buffer(data, size, &a, err, sizeof err) != 0) {
        CHECK(err[0] != '\0', "rejected without a message");
        return 0;
    }
    CHECK(a.ndim >= 0 && a.ndim <= NPY_MAX_DIMS, "ndim out of range");
    size_t count = 1;
    for (int i = 0; i < a.ndim; ++i) {
        CHECK(a.shape[i] >= 0, "negative dimension accepted");
        count *= (size_t)a.shape[i];
    }
    CHECK(count == a.count, "count is not the product of the shape");
    const size_t es = npy_dtype_size(a.dtype);
    CHECK(es != 0, "unknown dtype accepted");
    CHECK(a.nbytes == a.count * es && a.nbytes <= size, "nbytes inconsistent");
    CHECK(a.data != NULL, "no data");
    const size_t off = size - a.nbytes;
    CHECK(memcmp(a.data, data + off, a.nbytes) == 0, "data differs from the image"); /* LE host */

    npy_array h;
    size_t hoff = 0, need = 0;
    CHECK(npy_parse_header(data, off, &h, &hoff, &need, err, sizeof err) == 0,
          "header alone rejected");
    CHECK(hoff == off && h.dtype == a.dtype && h.ndim == a.ndim && h.count == a.count,
          "header alone parses differently");
    CHECK(memcmp(h.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) == 0, "shape differs");
    if (a.nbytes > 0) {
        npy_array t;
        CHECK(npy_parse_buffer(data, size - 1, &t, err, sizeof err) != 0,
              "a truncated image was accepted");
    }
    npy_free(&a);
    return 0;
}
