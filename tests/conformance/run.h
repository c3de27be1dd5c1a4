/* Entry points of the test bodies, called from main.c's CMocka wrappers. */
#ifndef CONF_RUN_H
#define CONF_RUN_H

#include "harness.h"

/* One table case (T->c) on T->dev. */
void conf_run_case(conf_test *T);

/* API misuse and API surface checks (misuse.c). */
typedef struct conf_misuse {
    char name[128];
    void (*fn)(conf_test *T, const struct conf_misuse *m);
    int a, b, c; /* parameters of fn */
} conf_misuse;

/* Non-finite input policy and size-limit API cases (nonfinite.c): adds
 * CONF_HARDENING_CASES entries to list (room for cap); returns the count. */
#define CONF_HARDENING_CASES 13
int conf_add_hardening_cases(conf_misuse *list, int cap);

/* Chunked and prefix-cached prefill cases (chunked.c): adds
 * CONF_CHUNKED_CASES entries to list (room for cap); returns the count. */
#define CONF_CHUNKED_CASES 32
int conf_add_chunked_cases(conf_misuse *list, int cap);

/* Varlen batches and paged KV cases (varlen.c): adds CONF_VARLEN_CASES
 * entries to list (room for cap); returns the count. */
#define CONF_VARLEN_CASES 46
int conf_add_varlen_cases(conf_misuse *list, int cap);

/* ABI and lifetime rules (abi.c): the log callback, stem_last_error()
 * clearing, destroy order, struct_size growth, versions, cache_dir
 * ownership. Adds CONF_ABI_CASES entries; returns the count. */
#define CONF_ABI_CASES 8
int conf_add_abi_cases(conf_misuse *list, int cap);

/* stem_select on hand-written XAttention masses, both rules (xattn_rules.c):
 * adds CONF_XATTN_RULE_CASES entries (room for cap); returns the count. */
#define CONF_XATTN_RULE_CASES 1
int conf_add_xattn_rule_cases(conf_misuse *list, int cap);

/* Builds the misuse list; *out is malloc'ed. */
int conf_build_misuse(conf_misuse **out);

#endif
