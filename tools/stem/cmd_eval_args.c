/* stem eval: --help, the arguments and the configuration list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_eval.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: stem eval [options]\n"
            "Runs SmolLM2-135M or Gemma-3-270M (GGUF; Gemma 3: the global layers) on libstem.\n"
            "  --model PATH          GGUF file (default $STEM_MODEL, else " EVAL_DEFAULT_MODEL
            ";\n"
            "                        fetch it with scripts/get-model.sh); 'gemma3' names\n"
            "                        " EVAL_GEMMA3_MODEL " (scripts/get-model-gemma3.sh)\n"
            "  --text F[,F...]       UTF-8 texts, one window each (data/austen/prideprejudice.txt)\n"
            "  --tokens N            window length in tokens (8192)\n"
            "  --offset T            first token of each window (0)\n"
            "  --configs SPEC        ';'-separated configurations to compare with dense, each\n"
            "                        selector[:key=value...], keys: b (block), k (k_start or\n"
            "                        uniform k), tau (xattention), mu, beta, dl (dense layers),\n"
            "                        stride, match (uniform: k = the equal-cost partner of Stem\n"
            "                        k_start=match, from the plan's budgets), chunk (the prompt\n"
            "                        as chunked prefill in calls of that many queries, a\n"
            "                        multiple of b; budget keyed on the whole prompt); e.g.\n"
            "                        'stem:b=64:k=16;uniform:b=64:match=16;stem:chunk=512'\n"
            "                        Test-only selectors: oracle (Stem's budget) and\n"
            "                        oracle_uniform (constant budget) keep the blocks with the\n"
            "                        most true attention mass (full attention on the host);\n"
            "                        stem_maxpool: Stem's budget, its antidiagonal score\n"
            "                        max-pooled over the block's strided groups (no bonus);\n"
            "                        stem_rowsoftmax: Stem's budget, blocks ranked by the\n"
            "                        softmax mass of each strided query row over all its\n"
            "                        strided keys (XAttention's estimator; no bonus);\n"
            "                        stem_adaptive: Stem's own block logits (bonus included),\n"
            "                        each row keeping the fewest blocks whose softmax over the\n"
            "                        row reaches tau (XAttention's allocation on Stem's score);\n"
            "                        stem_maxpool_adaptive: the same threshold on the\n"
            "                        max-pooled score (no bonus)\n"
            "  --dense-from P        deployment mode: the first P tokens are the prompt, run\n"
            "                        through libstem with a plan keyed on P; rows >= P are dense\n"
            "                        (sparse prefill + dense decode). Scores positions >= P-1\n"
            "                        unless --score-from says otherwise\n"
            "  --task T              passkey | needle | vartrack: a retrieval suite instead of\n"
            "                        --text (vartrack: a chain of --needles assignments)\n"
            "                        windows (prompts from the --text filler); scores the first\n"
            "                        answer token from the last prompt row and the rest of the\n"
            "                        answer under dense decode\n"
            "  --lengths L,..        prompt lengths in tokens (2048,4096,8000)\n"
            "  --depths D,..         needle depths in percent (10,30,50,70,90)\n"
            "  --keys K              keys per (length, depth) (6)   --seed S (1)\n"
            "  --key-from K          run only key indices >= K (the earlier prompts are still\n"
            "                        generated, so a stopped run resumes on the same prompts)\n"
            "  --needles M           needle task: key-value needles in the prompt; vartrack:\n"
            "                        links of the chain (4)\n"
            "  --layer-error SPEC    configurations whose per-layer attention-output error\n"
            "                        against dense is measured on the dense activations\n"
            "  --score-from T        first position whose prediction is scored (0; the second\n"
            "                        half of the window is also reported on its own)\n"
            "  --cache DIR           dense hidden states per window (.model/cache; '' = none)\n"
            "  --results FILE        append one TSV row per configuration and window\n"
            "  --generate K          print the greedy continuation of K tokens (dense)\n"
            "  --dump-logits FILE    write the dense logits [n, vocab] f32 (.npy) and the\n"
            "                        token ids to FILE.ids.npy\n"
            "  --dump-qkv DIR        write post-RoPE q/k/v (f16 .npy) of --dump-layers for one\n"
            "                        KV group (--dump-kv-head, --dump-q-heads of it)\n"
            "  --dump-ids FILE       write every token id of the (last) text (.npy i32), then stop\n"
            "  --dump-layers L,..    (2,14)   --dump-kv-head H (0)   --dump-q-heads N (2)\n");
    tool_print_common_help(f);
}

/* ------------------------------------------------------------ configurations */

int eval_parse_configs(const char *spec, const stem_config *base, eval_config *out, int cap,
                       int *count)
{
    char *copy = strdup(spec);
    if (!copy) return -1;
    int n = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        if (!*item) continue;
        if (n == cap) {
            free(copy);
            return tool_error("eval: more than %d configurations", cap), -1;
        }
        eval_config *c = &out[n];
        c->cfg = *base;
        snprintf(c->label, sizeof c->label, "%s", item);
        char *save2 = NULL;
        char *tok = strtok_r(item, ":", &save2);
        c->oracle = 0;
        c->match_k = 0;
        /* test-only: oracle block choice under Stem's (oracle) or a constant
         * (oracle_uniform) budget */
        if (!strcmp(tok, "oracle") || !strcmp(tok, "oracle_uniform")) {
            c->oracle = EVAL_HOST_ORACLE;
            c->cfg.selector = tok[6] ? STEM_SELECTOR_UNIFORM : STEM_SELECTOR_STEM;
        } else if (!strcmp(tok, "stem_maxpool")) {
            /* test-only estimator variant: Stem's budget, max-pooled score, no bonus */
            c->oracle = EVAL_HOST_MAXPOOL;
            c->cfg.selector = STEM_SELECTOR_STEM;
        } else if (!strcmp(tok, "stem_maxpool_adaptive")) {
            /* test-only: max-pooled score with the per-row mass threshold */
            c->oracle = EVAL_HOST_MAXPOOL_ADAPTIVE;
            c->cfg.selector = STEM_SELECTOR_STEM;
            c->cfg.k_start = 1; /* never dense by the official rule; budget unused */
        } else if (!strcmp(tok, "stem_adaptive")) {
            /* test-only allocation variant: Stem's block logits, per-row mass threshold */
            c->oracle = EVAL_HOST_ADAPTIVE;
            c->cfg.selector = STEM_SELECTOR_STEM;
            c->cfg.k_start = 1; /* an explicit budget: the plan is never dense by the
                                 * official rule; the budget itself is not used */
        } else if (!strcmp(tok, "stem_rowsoftmax")) {
            /* test-only estimator variant: Stem's budget, XAttention's block mass */
            c->oracle = EVAL_HOST_ROWSOFTMAX;
            c->cfg.selector = STEM_SELECTOR_STEM;
        } else if (stem_selector_from_name(tok, &c->cfg.selector) != STEM_OK) {
            free(copy);
            return tool_error("eval: unknown selector '%s'", tok), -1;
        }
        while ((tok = strtok_r(NULL, ":", &save2))) {
            char *eq = strchr(tok, '=');
            if (!eq) {
                free(copy);
                return tool_error("eval: expected key=value, got '%s'", tok), -1;
            }
            *eq = 0;
            double v = strtod(eq + 1, NULL);
            if (!strcmp(tok, "b")) c->cfg.block_size = (int32_t)v;
            else if (!strcmp(tok, "k")) {
                c->cfg.k_start = (int32_t)v;
                c->cfg.uniform_k = (int32_t)v;
            } else if (!strcmp(tok, "tau")) c->cfg.xattn_threshold = (float)v;
            else if (!strcmp(tok, "mu")) c->cfg.mu = v;
            else if (!strcmp(tok, "beta")) c->cfg.beta = (float)v;
            else if (!strcmp(tok, "dl")) c->cfg.dense_layers = (int32_t)v;
            else if (!strcmp(tok, "stride")) c->cfg.stride = (int32_t)v;
            else if (!strcmp(tok, "match")) c->match_k = (int32_t)v;
            else if (!strcmp(tok, "chunk")) c->chunk = (int64_t)v;
            else {
                free(copy);
                return tool_error("eval: unknown key '%s'", tok), -1;
            }
        }
        if (c->cfg.stride > c->cfg.block_size) c->cfg.stride = c->cfg.block_size;
        if (c->chunk < 0 || (c->chunk > 0 && (c->chunk % c->cfg.block_size || c->oracle))) {
            free(copy);
            return tool_error("eval: chunk=%lld must be a multiple of the block size %d "
                              "(and not with an oracle)",
                              (long long)c->chunk, (int)c->cfg.block_size), -1;
        }
        n++;
    }
    free(copy);
    *count = n;
    return 0;
}

int eval_parse_args(int argc, char **argv, eval_args *a)
{
    memset(a, 0, sizeof *a);
    tool_opts_init(&a->o);
    a->model = getenv("STEM_MODEL") ? getenv("STEM_MODEL") : EVAL_DEFAULT_MODEL;
    a->texts = "data/austen/prideprejudice.txt";
    a->cache = ".model/cache";
    a->tokens = 8192;
    a->score_from = -1;
    a->dump_layers[0] = 2;
    a->dump_layers[1] = 14;
    a->n_dump_layers = 2;
    a->dump_q_heads = 2;
    a->lengths = "2048,4096,8000";
    a->depths = "10,30,50,70,90";
    a->keys = 6;
    a->seed = 1;
    a->needles = 4;
    for (int i = 1; i < argc; i++) {
        int r = tool_parse_common(&a->o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        int m = 0;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 1;
        }
#define STR_OPT(name, field)                                     \
    if ((v = tool_take(argc, argv, &i, name, &m)) || m) {         \
        if (!v) return 2;                                         \
        a->field = v;                                             \
        continue;                                                 \
    }
#define I64_OPT(name, field, lo, hi)                                      \
    if ((v = tool_take(argc, argv, &i, name, &m)) || m) {                  \
        if (!v || tool_parse_i64(name, v, lo, hi, &a->field)) return 2;    \
        continue;                                                          \
    }
        STR_OPT("--model", model)
        STR_OPT("--text", texts)
        STR_OPT("--configs", configs)
        STR_OPT("--layer-error", err_configs)
        STR_OPT("--cache", cache)
        STR_OPT("--results", results)
        STR_OPT("--dump-logits", dump_logits)
        STR_OPT("--dump-qkv", dump_qkv)
        STR_OPT("--dump-ids", dump_ids)
        I64_OPT("--tokens", tokens, 2, 1 << 20)
        I64_OPT("--offset", offset, 0, INT64_MAX / 2)
        I64_OPT("--score-from", score_from, 0, 1 << 20)
        I64_OPT("--generate", generate, 0, 4096)
        I64_OPT("--dense-from", dense_from, 1, 1 << 20)
        STR_OPT("--task", task)
        STR_OPT("--lengths", lengths)
        STR_OPT("--depths", depths)
        I64_OPT("--keys", keys, 1, 1000)
        I64_OPT("--key-from", key_from, 0, 1000)
        I64_OPT("--seed", seed, 0, INT64_MAX / 2)
        I64_OPT("--needles", needles, 1, 64)
        if ((v = tool_take(argc, argv, &i, "--dump-layers", &m)) || m) {
            if (!v || tool_parse_i64_list("--dump-layers", v, a->dump_layers, 16,
                                          &a->n_dump_layers))
                return 2;
            continue;
        }
        if ((v = tool_take(argc, argv, &i, "--dump-kv-head", &m)) || m) {
            if (!v || tool_parse_i32("--dump-kv-head", v, 0, 1024, &a->dump_kv_head)) return 2;
            continue;
        }
        if ((v = tool_take(argc, argv, &i, "--dump-q-heads", &m)) || m) {
            if (!v || tool_parse_i32("--dump-q-heads", v, 1, 1024, &a->dump_q_heads)) return 2;
            continue;
        }
        return tool_error("eval: unknown option '%s' (see stem eval --help)", argv[i]), 2;
    }
    return 0;
}
