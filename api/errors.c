/* Status names, the thread-local error message, the log callback of the
 * call in progress, and the struct_size growth rule. */
#include "stem_internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char stem_error_message[1024];

/* The log callback of the public call in progress on this thread (set by
 * stem_enter*), so errors raised anywhere below it reach the caller's log. */
static _Thread_local stem_log_fn stem_call_log;
static _Thread_local void *stem_call_log_user;

void stem_enter_log(stem_log_fn log, void *user)
{
    stem_error_message[0] = '\0';
    stem_call_log = log;
    stem_call_log_user = user;
}

void stem_enter(const stem_context *ctx)
{
    if (ctx)
        stem_enter_log(ctx->desc.log, ctx->desc.log_user);
    else
        stem_enter_log(NULL, NULL);
}

void stem_enter_void(const stem_context *ctx)
{
    stem_call_log = ctx ? ctx->desc.log : NULL;
    stem_call_log_user = ctx ? ctx->desc.log_user : NULL;
}

void stem_log_mute(stem_log_fn *saved_log, void **saved_user)
{
    *saved_log = stem_call_log;
    *saved_user = stem_call_log_user;
    stem_call_log = NULL;
    stem_call_log_user = NULL;
}

void stem_log_unmute(stem_log_fn saved_log, void *saved_user)
{
    stem_call_log = saved_log;
    stem_call_log_user = saved_user;
}

stem_status stem_set_error(stem_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(stem_error_message, sizeof stem_error_message, fmt, ap);
    va_end(ap);
    if (stem_call_log && status != STEM_OK)
        stem_call_log(stem_call_log_user, STEM_LOG_ERROR, stem_error_message);
    return status;
}

void stem_log(const stem_context *ctx, int level, const char *fmt, ...)
{
    stem_log_fn log = ctx ? ctx->desc.log : stem_call_log;
    void *user = ctx ? ctx->desc.log_user : stem_call_log_user;
    if (!log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(user, level, line);
}

stem_status stem_struct_in(void *dst, size_t dst_size, const void *src, size_t min_size,
                           const char *fn, const char *what, const char *init)
{
    size_t have;
    memcpy(&have, src, sizeof have);
    stem_status st = stem_check_struct_size(have, min_size, fn, what, init);
    if (st != STEM_OK)
        return st;
    memcpy(dst, src, have < dst_size ? have : dst_size);
    memcpy(dst, &dst_size, sizeof dst_size); /* struct_size: ours from now on */
    return STEM_OK;
}

stem_status stem_struct_out(void *dst, const void *src, size_t src_size, size_t min_size,
                            const char *fn, const char *what, const char *init)
{
    size_t have;
    memcpy(&have, dst, sizeof have);
    stem_status st = stem_check_struct_size(have, min_size, fn, what, init);
    if (st != STEM_OK)
        return st;
    const size_t n = have < src_size ? have : src_size;
    /* Everything after struct_size, never past either struct. */
    memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t), n - sizeof(size_t));
    return STEM_OK;
}

stem_status stem_check_struct_size(size_t have, size_t need, const char *fn, const char *what,
                                   const char *init)
{
    if (have >= need)
        return STEM_OK;
    return stem_set_error(STEM_ERR_VERSION_MISMATCH,
                          "%s: %s->struct_size=%zu, expected >= %zu (call %s)", fn, what, have,
                          need, init);
}

void stem_clear_error(void) { stem_error_message[0] = '\0'; }

const char *stem_last_error(void) { return stem_error_message; }

const char *stem_status_name(stem_status status)
{
    switch (status) {
    case STEM_OK: return "STEM_OK";
    case STEM_ERR_INVALID_ARGUMENT: return "STEM_ERR_INVALID_ARGUMENT";
    case STEM_ERR_UNSUPPORTED: return "STEM_ERR_UNSUPPORTED";
    case STEM_ERR_OUT_OF_MEMORY: return "STEM_ERR_OUT_OF_MEMORY";
    case STEM_ERR_DEVICE_OUT_OF_MEMORY: return "STEM_ERR_DEVICE_OUT_OF_MEMORY";
    case STEM_ERR_BACKEND_UNAVAILABLE: return "STEM_ERR_BACKEND_UNAVAILABLE";
    case STEM_ERR_KERNEL_BUILD: return "STEM_ERR_KERNEL_BUILD";
    case STEM_ERR_DEVICE_LOST: return "STEM_ERR_DEVICE_LOST";
    case STEM_ERR_BACKEND_API: return "STEM_ERR_BACKEND_API";
    case STEM_ERR_VERSION_MISMATCH: return "STEM_ERR_VERSION_MISMATCH";
    case STEM_ERR_INTERNAL: return "STEM_ERR_INTERNAL";
    }
    return "STEM_ERR_UNKNOWN";
}

#define STEM_STR2(x) #x
#define STEM_STR(x) STEM_STR2(x)
uint32_t stem_version(void) { return STEM_VERSION; }

const char *stem_version_string(void)
{
    return STEM_STR(STEM_VERSION_MAJOR) "." STEM_STR(STEM_VERSION_MINOR) "." STEM_STR(
        STEM_VERSION_PATCH);
}

void stem_log_plan(const struct stem_plan *plan)
{
    const stem_context *ctx = plan->ctx;
    if (!ctx->desc.log)
        return;
    const stem_attention_desc *d = &plan->desc;
    const stem_config *c = &plan->cfg;
    const int64_t passes = ((d->batch + plan->batch_per_pass - 1) / plan->batch_per_pass) *
                           ((d->num_q_heads + plan->heads_per_pass - 1) / plan->heads_per_pass);
    stem_log(ctx, STEM_LOG_INFO,
             "plan: B=%lld Hq=%lld Hkv=%lld N=%lld d=%lld %s on %s; %s, block %d stride %d, "
             "%lld query blocks, %s",
             (long long)d->batch, (long long)d->num_q_heads, (long long)d->num_kv_heads,
             (long long)d->q_len, (long long)d->head_dim, stem_dtype_name(d->dtype),
             stem_backend_name(ctx->device.backend), stem_selector_name(c->selector),
             c->block_size, c->stride, (long long)plan->n_rows,
             plan->dense ? "dense (every causal block)" : "sparse");
    if (d->q_layout == STEM_Q_PACKED) {
        stem_log(ctx, STEM_LOG_INFO,
                 "plan: varlen batch (%s keys%s): up to %lld sequences of up to %lld queries and "
                 "%lld keys, one pass per sequence (docs/semantics.md 9)",
                 d->kv_store == STEM_KV_PAGED    ? "paged"
                 : d->kv_store == STEM_KV_PACKED ? "packed"
                                                 : "per-entry",
                 d->kv_store == STEM_KV_PAGED ? ", gathered into the workspace" : "",
                 (long long)d->batch, (long long)d->q_len, (long long)d->kv_len);
    } else if (d->q_len < d->kv_len) {
        stem_log(ctx, STEM_LOG_INFO,
                 "plan: chunked / prefix-cached call: queries [%lld, %lld) of %lld visible keys, "
                 "rows %lld..%lld, budget keyed on prompt_len %lld, %s value statistics",
                 (long long)plan->q_offset, (long long)d->kv_len, (long long)d->kv_len,
                 (long long)plan->row0, (long long)(plan->n_blocks - 1),
                 (long long)plan->prompt_len,
                 d->vstats_mode == STEM_VSTATS_PROVIDED ? "PROVIDED" : "VISIBLE");
        if (d->prompt_len == 0)
            stem_log(ctx, STEM_LOG_WARN,
                     "plan: q_len < kv_len without prompt_len: the budget is keyed on kv_len; "
                     "for chunked prefill pass the full prompt length (docs/semantics.md 8)");
    }
    if (!plan->dense)
        stem_log(ctx, STEM_LOG_INFO,
                 "plan: budget k_start %d -> k_end %d blocks, density %.4f of causal blocks",
                 plan->k_start, plan->budget[plan->n_prompt - 1], plan->budget_density);
    stem_log(ctx, STEM_LOG_INFO,
             "plan: stem_prefill in %lld pass(es) of %lld batch x %lld query heads, "
             "workspace %zu bytes",
             (long long)passes, (long long)plan->batch_per_pass, (long long)plan->heads_per_pass,
             plan->workspace_bytes);
}
