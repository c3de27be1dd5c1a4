/* Conformance harness: resources, dtype conversion, layouts. */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ------------------------------------------------------------ resources */

void *res_alloc(conf_res *r, size_t bytes)
{
    if (r->n_mem >= CONF_RES_MAX)
        fail_msg("harness: more than %d host allocations in one test", CONF_RES_MAX);
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p)
        fail_msg("harness: out of host memory (%zu bytes)", bytes);
    r->mem[r->n_mem++] = p;
    return p;
}

void res_add_buffer(conf_res *r, stem_buffer *b)
{
    if (r->n_buf >= CONF_RES_MAX) {
        stem_buffer_destroy(b);
        fail_msg("harness: more than %d buffers in one test", CONF_RES_MAX);
    }
    r->buf[r->n_buf++] = b;
}

void res_add_plan(conf_res *r, stem_plan *p)
{
    if (r->n_plan >= (int)(sizeof r->plan / sizeof r->plan[0])) {
        stem_plan_destroy(p);
        fail_msg("harness: too many plans in one test");
    }
    r->plan[r->n_plan++] = p;
}

void res_add_context(conf_res *r, stem_context *c)
{
    if (r->n_ctx >= (int)(sizeof r->ctx / sizeof r->ctx[0])) {
        stem_context_destroy(c);
        fail_msg("harness: too many contexts in one test");
    }
    r->ctx[r->n_ctx++] = c;
}

/* Plans before buffers before contexts: each may reference the next. */
int res_release(conf_res *r)
{
    int rc = 0;
    for (int i = r->n_plan - 1; i >= 0; --i)
        stem_plan_destroy(r->plan[i]);
    for (int i = r->n_buf - 1; i >= 0; --i)
        stem_buffer_destroy(r->buf[i]);
    for (int i = r->n_ctx - 1; i >= 0; --i)
        if (stem_context_destroy(r->ctx[i]) != STEM_OK) {
            fprintf(stderr, "harness: stem_context_destroy: %s\n", stem_last_error());
            rc = -1;
        }
    for (int i = r->n_mem - 1; i >= 0; --i)
        free(r->mem[i]);
    memset(r, 0, sizeof *r);
    return rc;
}

int conf_verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("STEM_TEST_VERBOSE");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}

/* ------------------------------------------------------------- numbers */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even, with subnormals, overflow to inf, NaN kept quiet. */
uint16_t conf_f32_to_f16(float f)
{
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u)
        return (uint16_t)(sign | (ax > 0x7F800000u ? 0x7E00u : 0x7C00u));
    if (ax >= 0x477FF000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7C00u);
    if (ax < 0x38800000u) { /* below the smallest normal half (2^-14) */
        if (ax < 0x33000000u) /* < 2^-25: rounds to zero */
            return sign;
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24 */
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u)))
            ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10)); /* rebias 127 -> 15 */
    const uint32_t rem = ax & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
        ++r;
    return (uint16_t)(sign | r);
}

float conf_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F)
        return bits_f32(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        const float v = (float)m * 0x1.0p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t conf_f32_to_bf16(float f)
{
    const uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

float conf_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

float conf_round_to(stem_dtype dt, float f)
{
    switch (dt) {
    case STEM_DTYPE_F16: return conf_f16_to_f32(conf_f32_to_f16(f));
    case STEM_DTYPE_BF16: return conf_bf16_to_f32(conf_f32_to_bf16(f));
    default: return f;
    }
}

double conf_load(stem_dtype dt, const void *p)
{
    uint16_t h;
    float f;
    switch (dt) {
    case STEM_DTYPE_F16: memcpy(&h, p, 2); return conf_f16_to_f32(h);
    case STEM_DTYPE_BF16: memcpy(&h, p, 2); return conf_bf16_to_f32(h);
    default: memcpy(&f, p, 4); return f;
    }
}

void conf_store(stem_dtype dt, void *p, float value)
{
    uint16_t h;
    switch (dt) {
    case STEM_DTYPE_F16: h = conf_f32_to_f16(value); memcpy(p, &h, 2); break;
    case STEM_DTYPE_BF16: h = conf_f32_to_bf16(value); memcpy(p, &h, 2); break;
    default: memcpy(p, &value, 4); break;
    }
}

double conf_unit_roundoff(stem_dtype dt)
{
    switch (dt) {
    case STEM_DTYPE_F16: return 0x1.0p-11;
    case STEM_DTYPE_BF16: return 0x1.0p-8;
    default: return 0x1.0p-24;
    }
}

/* -------------------------------------------------------------- layouts */

const char *conf_layout_name(conf_layout l)
{
    static const char *const names[CONF_LAYOUT_COUNT] = {"bhnd", "bnhd", "bhndpad", "bnhdpad",
                                                         "nbhd"};
    return (unsigned)l < CONF_LAYOUT_COUNT ? names[l] : "?";
}

int64_t conf_layout_strides(conf_layout l, const int64_t dims[4], int64_t s[4])
{
    const int64_t B = dims[0], H = dims[1], N = dims[2], D = dims[3];
    switch (l) {
    case CONF_BNHD:
        s[3] = 1; s[1] = D; s[2] = H * D; s[0] = N * H * D;
        break;
    case CONF_BHND_PAD:
        s[3] = 1; s[2] = D + 3; s[1] = N * s[2] + 5; s[0] = H * s[1] + 7;
        break;
    case CONF_BNHD_PAD:
        s[3] = 1; s[1] = D + 2; s[2] = H * s[1] + 4; s[0] = N * s[2] + 6;
        break;
    case CONF_NBHD:
        s[3] = 1; s[1] = D; s[0] = H * D; s[2] = B * H * D;
        break;
    default:
        s[3] = 1; s[2] = D; s[1] = N * D; s[0] = H * N * D;
        break;
    }
    int64_t last = 0;
    for (int i = 0; i < 4; ++i)
        last += (dims[i] - 1) * s[i];
    return last + 1;
}

void conf_mark_roles(unsigned char *role, const stem_tensor *t, unsigned char tag)
{
    const size_t es = stem_dtype_size(t->dtype);
    for (int64_t b = 0; b < t->dims[0]; ++b)
        for (int64_t h = 0; h < t->dims[1]; ++h)
            for (int64_t n = 0; n < t->dims[2]; ++n) {
                if (t->strides[3] == 1) {
                    memset(conf_elem(role, t, b, h, n, 0), tag, es * (size_t)t->dims[3]);
                    continue;
                }
                for (int64_t i = 0; i < t->dims[3]; ++i)
                    memset(conf_elem(role, t, b, h, n, i), tag, es);
            }
}

void conf_poison(unsigned char *image, const stem_tensor *t)
{
    unsigned char pat[4];
    switch (t->dtype) {
    case STEM_DTYPE_F32: { const uint32_t v = 0x7FC0DEADu; memcpy(pat, &v, 4); break; }
    case STEM_DTYPE_F16: { const uint16_t v = 0x7E5Au; memcpy(pat, &v, 2); break; }
    case STEM_DTYPE_BF16: { const uint16_t v = 0x7FDAu; memcpy(pat, &v, 2); break; }
    default: { const uint32_t v = 0x5A5A5A5Au; memcpy(pat, &v, 4); break; }
    }
    const size_t es = stem_dtype_size(t->dtype);
    for (int64_t b = 0; b < t->dims[0]; ++b)
        for (int64_t h = 0; h < t->dims[1]; ++h)
            for (int64_t n = 0; n < t->dims[2]; ++n)
                for (int64_t i = 0; i < t->dims[3]; ++i)
                    memcpy(conf_elem(image, t, b, h, n, i), pat, es);
}
