/* Shared pieces of the stem subcommands: option parsing for every
 * stem_config knob and device choice, error reporting, timing, JSON. */
#ifndef STEM_TOOL_H
#define STEM_TOOL_H

#include <stdint.h>
#include <stdio.h>

#include "stem.h"

typedef struct tool_opts {
    stem_config cfg;
    float scale;         /* stem_attention_desc.softmax_scale (0 = 1/sqrt(d)) */
    int32_t layer;       /* stem_attention_desc.layer_index (-1) */
    int32_t device;      /* global device index, or STEM_DEVICE_AUTO */
    const char *backend; /* first device of this backend; NULL = unset */
    int32_t threads;     /* CPU threads, 0 = library default */
} tool_opts;

void tool_opts_init(tool_opts *o);

/* Tries argv[*i] as a common option. Returns 1 if consumed (*i advanced
 * past any value), 0 if not a common option, -1 on a bad value (printed). */
int tool_parse_common(tool_opts *o, int argc, char **argv, int *i);
void tool_print_common_help(FILE *f);

/* If argv[*i] is --name or --name=value, returns its value (taking the
 * next argument when needed, advancing *i) and sets *matched; NULL with
 * *matched set means the value is missing (printed). */
const char *tool_take(int argc, char **argv, int *i, const char *name, int *matched);

/* Strict number parsing: the whole string, in range. 0 ok, -1 bad (printed). */
int tool_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
int tool_parse_i32(const char *opt, const char *s, int32_t lo, int32_t hi, int32_t *out);
int tool_parse_f64(const char *opt, const char *s, double *out);
/* Comma-separated positive integers ("8192,16384"); at most cap. */
int tool_parse_i64_list(const char *opt, const char *s, int64_t *out, int cap, int *count);

/* Creates the context that --device / --backend / --threads ask for. */
int tool_open_context(const tool_opts *o, stem_context **ctx, stem_device_info *info);

/* Backends this library names (stem_backend values are dense from 0; the
 * enum may grow), at most TOOL_MAX_BACKENDS. */
#define TOOL_MAX_BACKENDS 16
int tool_backend_count(void);

/* Prints "stem: what: STATUS: detail" to stderr; returns 1 (an exit code). */
int tool_fail(stem_status st, const char *what);
/* With a `done:` label in the caller: on failure, print (tool_fail) and go there. */
#define TOOL_CHECK(call, what)                                                                \
    do {                                                                                      \
        stem_status st_ = (call);                                                             \
        if (st_ != STEM_OK) {                                                                 \
            tool_fail(st_, what);                                                             \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)
/* A tensor view: dims and strides (elements) given outright, offset 0. */
stem_tensor tool_view(stem_buffer *b, stem_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3, int64_t s0, int64_t s1, int64_t s2, int64_t s3);
/* Prints "stem: message" to stderr; returns 1. */
int tool_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

double tool_now_ms(void);          /* monotonic clock */
void tool_utc_date(char *buf, size_t n); /* "2025-01-31T12:00:00Z" */
double tool_median(double *v, int n);    /* sorts v */

/* Checked a*b*... for buffer sizes; 0 on overflow or a negative factor. */
size_t tool_mul_size(int count, const int64_t *factors, size_t elem);

/* JSON helpers: a string with escapes; a number (null if not finite). */
void tool_json_string(FILE *f, const char *s);
void tool_json_number(FILE *f, double v);
/* {"selector": ..., "block_size": ..., ...} for every knob of o. */
void tool_json_config(FILE *f, const tool_opts *o, const char *indent);
/* One line naming the device: "cpu[0] Name (detail)". */
void tool_device_line(const stem_device_info *info, char *buf, size_t n);

#endif
