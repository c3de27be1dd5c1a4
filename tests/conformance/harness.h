/* Conformance harness: test state, resources, dtype conversion, tensor
 * layouts and device buffers with host shadows (poison + canaries). */
#ifndef CONF_HARNESS_H
#define CONF_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "stem.h"

/* The backends the suite knows (cpu, cuda, opencl, vulkan): stem_backend is
 * open, and the names test checks that this library names no more. */
#define CONF_BACKENDS 4

/* ------------------------------------------------------------ resources */

/* Everything a test allocates, released by the CMocka teardown even when an
 * assertion longjmps out of the test. */
#define CONF_RES_MAX 96
typedef struct conf_res {
    void *mem[CONF_RES_MAX];
    int n_mem;
    stem_buffer *buf[CONF_RES_MAX];
    int n_buf;
    stem_plan *plan[8];
    int n_plan;
    stem_context *ctx[4];
    int n_ctx;
} conf_res;

void *res_alloc(conf_res *r, size_t bytes); /* zeroed; fails the test on OOM */
void res_add_buffer(conf_res *r, stem_buffer *b);
void res_add_plan(conf_res *r, stem_plan *p);
void res_add_context(conf_res *r, stem_context *c);
/* Destroys everything in reverse order; -1 (with a message on stderr) when
 * a context refused to go (a child of it outlived the release). */
int res_release(conf_res *r);

/* -------------------------------------------------------------- devices */

typedef struct conf_device {
    uint32_t global_index;
    stem_device_info info;
    stem_context *ctx;
} conf_device;

/* Per-test state handed to CMocka. */
enum { CONF_FAILED = 0, CONF_PASSED = 1, CONF_SKIPPED = 2 };
struct conf_case;
struct conf_misuse;
typedef struct conf_test {
    const struct conf_case *c;
    const struct conf_misuse *m;
    conf_device *dev;
    int status;
    double seconds;
    conf_res res;
} conf_test;

int conf_verbose(void); /* STEM_TEST_VERBOSE=1: per-case timing and error ratios */

/* ------------------------------------------------------------- numbers */

uint16_t conf_f32_to_f16(float f);
float conf_f16_to_f32(uint16_t h);
uint16_t conf_f32_to_bf16(float f);
float conf_bf16_to_f32(uint16_t h);
/* Rounds through the storage dtype (f32 unchanged). */
float conf_round_to(stem_dtype dt, float f);
/* Reads / writes one element of a float dtype at p. */
double conf_load(stem_dtype dt, const void *p);
void conf_store(stem_dtype dt, void *p, float value);
double conf_unit_roundoff(stem_dtype dt); /* 2^-24, 2^-11, 2^-8 */

/* -------------------------------------------------------------- layouts */

typedef enum conf_layout {
    CONF_BHND = 0,
    CONF_BNHD,
    CONF_BHND_PAD, /* BHND with gaps after every row, head and batch */
    CONF_BNHD_PAD,
    CONF_NBHD,     /* token-major across the batch */
    CONF_LAYOUT_COUNT
} conf_layout;

const char *conf_layout_name(conf_layout l);
/* Element strides for logical dims [B, H, N, D]; returns the number of
 * elements the view spans (largest offset + 1). */
int64_t conf_layout_strides(conf_layout l, const int64_t dims[4], int64_t strides[4]);

/* ------------------------------------------------ buffers with shadows */

/* A device buffer and the bytes it must hold: inputs' data, outputs'
 * poison, and canary bytes everywhere no logical element lives. */
#define CONF_CANARY 0xA5u
typedef struct conf_buffer {
    stem_buffer *buf;
    size_t size;
    unsigned char *shadow; /* expected contents */
    unsigned char *read;   /* scratch for read-backs */
    unsigned char *role;   /* per byte: 0 canary, else 1 + tensor slot */
    void *host;            /* wrapped host memory, or NULL */
} conf_buffer;

typedef struct conf_tensor {
    stem_tensor t;
    int buf;          /* index into the buffer set */
    int64_t extent;   /* elements spanned */
} conf_tensor;

/* Byte address of element (b,h,n,i) in an image of the tensor's buffer. */
static inline unsigned char *conf_elem(unsigned char *image, const stem_tensor *t, int64_t b,
                                       int64_t h, int64_t n, int64_t i)
{
    return image + t->offset +
           (size_t)(b * t->strides[0] + h * t->strides[1] + n * t->strides[2] +
                    i * t->strides[3]) *
               stem_dtype_size(t->dtype);
}

/* Marks the bytes of every logical element of t in role[] with tag. */
void conf_mark_roles(unsigned char *role, const stem_tensor *t, unsigned char tag);
/* Fills the logical elements of t in image with the dtype's poison (NaN
 * for floats, 0x5A5A5A5A for i32). */
void conf_poison(unsigned char *image, const stem_tensor *t);

#endif
