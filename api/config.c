/* Descriptor defaults, names of enums, tensor helpers. */
#include "stem_internal.h"

#include <ctype.h>
#include <string.h>

void stem_config_init(stem_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->selector = STEM_SELECTOR_STEM;
    cfg->block_size = 128;
    cfg->stride = 8;
    cfg->beta = 0.2f;
    cfg->mu = 0.7;
    cfg->sink_blocks = 4;
    cfg->local_blocks = 4;
    cfg->norm = 1.0f;
    cfg->dense_below_blocks = 56;
    cfg->medium_below_blocks = 160;
    cfg->medium_rate = 0.2;
    cfg->medium_bias = 30;
    cfg->large_rate = 0.1;
    cfg->large_bias = 30;
    cfg->k_start = 0;
    cfg->paper_short_rate = 0.2;
    cfg->paper_long_rate = 0.1;
    cfg->paper_switch_tokens = 16384;
    cfg->paper_min_blocks = 54;
    cfg->uniform_k = 0;
    cfg->xattn_threshold = 0.9f;
    cfg->dense_layers = 2;
    cfg->dense_above_density = 0.0;
}

void stem_attention_desc_init(stem_attention_desc *desc)
{
    if (!desc)
        return;
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    desc->batch = 1;
    desc->num_q_heads = 1;
    desc->num_kv_heads = 1;
    desc->head_dim = 128;
    desc->dtype = STEM_DTYPE_F32;
    desc->causal = 1;
    desc->softmax_scale = 0.0f;
    desc->layer_index = -1;
}

void stem_plan_info_init(stem_plan_info *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

static const char *const selector_names[STEM_SELECTOR_COUNT] = {
    "stem", "stem_paper", "uniform", "xattention", "dense", "xattention_strict"};

const char *stem_selector_name(stem_selector selector)
{
    if ((unsigned)selector >= STEM_SELECTOR_COUNT)
        return "unknown";
    return selector_names[selector];
}

static int equal_nocase(const char *a, const char *b)
{
    for (; *a && *b; ++a, ++b)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

stem_status stem_selector_from_name(const char *name, stem_selector *out)
{
    stem_enter(NULL);
    if (!name || !out)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_selector_from_name: %s is NULL",
                              name ? "out" : "name");
    for (int i = 0; i < STEM_SELECTOR_COUNT; ++i) {
        if (equal_nocase(name, selector_names[i])) {
            *out = (stem_selector)i;
            return STEM_OK;
        }
    }
    return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                          "unknown selector '%s' (stem, stem_paper, uniform, xattention, "
                          "xattention_strict, dense)",
                          name);
}

size_t stem_dtype_size(stem_dtype dtype)
{
    switch (dtype) {
    case STEM_DTYPE_F32: return 4;
    case STEM_DTYPE_F16: return 2;
    case STEM_DTYPE_BF16: return 2;
    case STEM_DTYPE_I32: return 4;
    }
    return 0;
}

const char *stem_dtype_name(stem_dtype dtype)
{
    switch (dtype) {
    case STEM_DTYPE_F32: return "f32";
    case STEM_DTYPE_F16: return "f16";
    case STEM_DTYPE_BF16: return "bf16";
    case STEM_DTYPE_I32: return "i32";
    }
    return "unknown";
}

static stem_tensor make_tensor(stem_buffer *buf, size_t offset, stem_dtype dtype, int64_t b,
                               int64_t h, int64_t n, int64_t d)
{
    stem_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = buf;
    t.offset = offset;
    t.dtype = dtype;
    t.dims[0] = b;
    t.dims[1] = h;
    t.dims[2] = n;
    t.dims[3] = d;
    return t;
}

stem_tensor stem_tensor_bhnd(stem_buffer *buf, size_t offset, stem_dtype dtype, int64_t b,
                             int64_t h, int64_t n, int64_t d)
{
    stem_tensor t = make_tensor(buf, offset, dtype, b, h, n, d);
    t.strides[3] = 1;
    t.strides[2] = d;
    t.strides[1] = n * d;
    t.strides[0] = h * n * d;
    return t;
}

stem_tensor stem_tensor_bnhd(stem_buffer *buf, size_t offset, stem_dtype dtype, int64_t b,
                             int64_t h, int64_t n, int64_t d)
{
    stem_tensor t = make_tensor(buf, offset, dtype, b, h, n, d);
    t.strides[3] = 1;
    t.strides[1] = d;
    t.strides[2] = h * d;
    t.strides[0] = n * h * d;
    return t;
}
