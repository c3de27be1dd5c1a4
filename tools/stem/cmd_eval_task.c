/* stem eval --task: retrieval prompts built from public-domain filler and
 * scored the way a deployment answers them: the prompt is prefilled through
 * libstem (plan keyed on the prompt length P), the first answer token comes
 * from the last prompt row, and the rest of the answer is teacher-forced
 * dense decode (rows >= P dense).
 *   passkey: one "The pass key is NNNNN" needle at a depth of the filler.
 *   needle:  M key-value needles ("One of the special magic numbers for W
 *            is: NNNNNNN."), one asked for; the others are distractors.
 *   vartrack: a chain of M assignments in the spirit of RULER's variable
 *            tracking ("VAR A = NNNNN." at the depth, then "VAR B = VAR A."
 *            and so on at random later places); the value of the chain's
 *            last variable is asked for, so every link must be kept.
 * One TSV row per (prompt, configuration), dense included. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd_eval.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *const WORDS[] = {
    "apple",   "river",  "candle", "marble", "falcon", "harbor", "violet", "copper",
    "meadow",  "lantern", "orchid", "pepper", "saddle", "thunder", "walnut", "zephyr",
    "anchor",  "basket", "cedar",  "dragon", "ember",  "glacier", "hazel",  "island",
    "jasmine", "kettle", "lemon",  "mirror", "nutmeg", "oyster", "pebble", "quartz"};
enum { N_WORDS = sizeof WORDS / sizeof WORDS[0] };

typedef struct tokbuf {
    int32_t *ids;
    int64_t n, cap;
} tokbuf;

static int tb_push(tokbuf *b, const int32_t *ids, int64_t n)
{
    if (b->n + n > b->cap) {
        int64_t cap = (b->n + n) * 2 + 64;
        int32_t *p = realloc(b->ids, (size_t)cap * sizeof *p);
        if (!p) return -1;
        b->ids = p;
        b->cap = cap;
    }
    memcpy(b->ids + b->n, ids, (size_t)n * sizeof *ids);
    b->n += n;
    return 0;
}

static int tb_text(tokbuf *b, const lm_tokenizer *tok, const char *text)
{
    size_t len = strlen(text);
    int32_t tmp[1024];
    int64_t n = lm_encode(tok, text, len, tmp, 1024);
    if (n < 0 || n > 1024) return -1;
    return tb_push(b, tmp, n);
}

static int parse_list(const char *s, int64_t *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz > 0 ? malloc((size_t)sz + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[sz] = 0, *len = (size_t)sz;
    return buf;
}

typedef struct answer_score {
    double p_first, nll_rest;
    int top1_first, exact;
} answer_score;

/* logits of rows [P-1, n-1): the answer's tokens ans[0..A) */
static int score_answer(const lm_model *m, const float *hid, int64_t P, const int32_t *ans,
                        int64_t A, float *logits, answer_score *r)
{
    lm_logits(m, hid + (P - 1) * m->d_model, A, logits);
    memset(r, 0, sizeof *r);
    r->exact = 1;
    for (int64_t a = 0; a < A; a++) {
        float *x = logits + a * m->n_vocab;
        float mx = x[0];
        int32_t am = 0;
        for (int32_t i = 1; i < m->n_vocab; i++)
            if (x[i] > mx) mx = x[i], am = i;
        double z = 0.0;
        for (int32_t i = 0; i < m->n_vocab; i++) z += exp((double)x[i] - mx);
        double lp = (double)x[ans[a]] - mx - log(z);
        if (a == 0) {
            r->p_first = exp(lp);
            r->top1_first = am == ans[0];
        } else {
            r->nll_rest -= lp;
        }
        r->exact &= am == ans[a];
    }
    if (A > 1) r->nll_rest /= (double)(A - 1);
    return 0;
}

int eval_task(eval_state *es, const eval_args *a, eval_config *cfgs, int n_cfgs)
{
    const int needle_task = !strcmp(a->task, "needle"), vt_task = !strcmp(a->task, "vartrack");
    if (!needle_task && !vt_task && strcmp(a->task, "passkey"))
        return tool_error("eval: unknown --task '%s' (passkey, needle, vartrack)", a->task);
    if ((needle_task || vt_task) && (a->needles < 1 + vt_task || a->needles > 64))
        return tool_error("eval: --needles %lld: 1-64 for needle, 2-64 for vartrack",
                          (long long)a->needles);
    int64_t lengths[16], depths[32];
    int n_len = parse_list(a->lengths, lengths, 16), n_dep = parse_list(a->depths, depths, 32);
    if (n_len <= 0 || n_dep <= 0) return tool_error("eval: bad --lengths or --depths");
    if (a->key_from >= a->keys)
        return tool_error("eval: --key-from %lld leaves none of --keys %lld to run",
                          (long long)a->key_from, (long long)a->keys);
    const lm_model *m = &es->model;
    /* filler: every --text, tokenized once */
    tokbuf fill[EVAL_MAX_TEXTS] = {{0}};
    int n_fill = 0, rc = 0;
    char *texts = strdup(a->texts), *save = NULL;
    for (char *t = strtok_r(texts, ",", &save); t && n_fill < EVAL_MAX_TEXTS;
         t = strtok_r(NULL, ",", &save)) {
        size_t len = 0;
        char *s = read_all(t, &len);
        if (!s) {
            rc = tool_error("eval: cannot read %s", t);
            break;
        }
        fill[n_fill].cap = (int64_t)len + 16;
        fill[n_fill].ids = malloc((size_t)fill[n_fill].cap * sizeof(int32_t));
        fill[n_fill].n = fill[n_fill].ids ? lm_encode(es->tok, s, len, fill[n_fill].ids,
                                                       fill[n_fill].cap)
                                          : -1;
        free(s);
        if (fill[n_fill].n < 0) {
            rc = tool_error("eval: out of memory tokenizing");
            break;
        }
        n_fill++;
    }
    free(texts);
    FILE *res = NULL;
    if (!rc && a->results) {
        struct stat st;
        int fresh = stat(a->results, &st) != 0;
        res = fopen(a->results, "a");
        if (!res) rc = tool_error("eval: cannot open %s", a->results);
        else if (fresh)
            fprintf(res, "task\tlength\tprompt_tokens\tdepth\tkey_index\tkey\ttext\tconfig\t"
                         "selector\tblock\tk\ttau\tmu\tdl\tdensity\tp_first\ttop1_first\t"
                         "nll_rest\texact\tseconds\tcommit\tseed\tneedles\n");
    }
    printf("%-8s %6s %5s %4s %-10s %-34s %8s %8s %5s %8s %5s %7s\n", "task", "P", "depth",
           "key", "value", "config", "density", "p_first", "top1", "nll_rest", "exact", "sec");
    uint64_t rng = 0x5eed0000ull + (uint64_t)a->seed;
    /* keys outermost within a length, so a run cut short still covers every depth */
    for (int li = 0; li < n_len && !rc; li++)
        for (int64_t ki = 0; ki < a->keys && !rc; ki++)
            for (int di = 0; di < n_dep && !rc; di++) {
                /* the prompt */
                const int ti = (int)((li * n_dep * a->keys + di * a->keys + ki) % n_fill);
                const int n_need = needle_task || vt_task ? (int)a->needles : 1;
                char value[32], word[32], line[512], question[512], answer[64];
                const int target = vt_task ? n_need - 1 : 0; /* vartrack: the chain's end */
                int64_t vals[64] = {0}, wds[64] = {0}, pos_frac[64] = {0};
                for (int j = 0; j < n_need; j++) {
                    vals[j] = needle_task ? 1000000 + (int64_t)(rng_next(&rng) % 9000000)
                                          : 10000 + (int64_t)(rng_next(&rng) % 90000);
                    int ok;
                    do { /* distinct words */
                        wds[j] = (int64_t)(rng_next(&rng) % N_WORDS);
                        ok = 1;
                        for (int i = 0; i < j; i++) ok &= wds[i] != wds[j];
                    } while (!ok);
                    pos_frac[j] = j == target ? depths[di] * 100
                                              : (int64_t)(rng_next(&rng) % 10001);
                    /* vartrack overwrites that place (the value at the depth, the
                     * links after it); the draw above stays so the prompts, and the
                     * committed results, keep the generator's stream */
                    if (vt_task)
                        pos_frac[j] = j == 0 ? depths[di] * 100
                                             : depths[di] * 100 +
                                                   (int64_t)(rng_next(&rng) %
                                                             (uint64_t)(10001 - depths[di] * 100));
                }
                if (vt_task) /* links in chain order: sort the later places */
                    for (int i = 2; i < n_need; i++)
                        for (int j = i; j > 1 && pos_frac[j] < pos_frac[j - 1]; j--) {
                            const int64_t t = pos_frac[j];
                            pos_frac[j] = pos_frac[j - 1];
                            pos_frac[j - 1] = t;
                        }
                snprintf(value, sizeof value, "%lld", (long long)vals[vt_task ? 0 : target]);
                snprintf(word, sizeof word, "%s", WORDS[wds[target]]);
                tokbuf pre = {0}, q = {0}, ans = {0}, prompt = {0};
                tokbuf needle[64];
                memset(needle, 0, sizeof needle);
                int bad = tb_text(&pre, es->tok,
                                  vt_task ? "Memorize and track the chain of variable "
                                            "assignments hidden in the following text.\n\n"
                                  : needle_task
                                      ? "Some special magic numbers are hidden within the "
                                        "following text. Make sure to memorize them. I will "
                                        "quiz you about the numbers afterwards.\n\n"
                                      : "There is an important piece of information hidden "
                                        "inside a lot of irrelevant text. Find it and memorize "
                                        "it. I will quiz you about it.\n\n");
                int64_t need_tokens = 0;
                for (int j = 0; j < n_need && !bad; j++) {
                    if (vt_task && j == 0)
                        snprintf(line, sizeof line, "\n\nVAR %s = %s.\n\n", WORDS[wds[0]], value);
                    else if (vt_task)
                        snprintf(line, sizeof line, "\n\nVAR %s = VAR %s.\n\n", WORDS[wds[j]],
                                 WORDS[wds[j - 1]]);
                    else if (needle_task)
                        snprintf(line, sizeof line,
                                 "\n\nOne of the special magic numbers for %s is: %lld.\n\n",
                                 WORDS[wds[j]], (long long)vals[j]);
                    else
                        snprintf(line, sizeof line,
                                 "\n\nThe pass key is %s. Remember it. %s is the pass key.\n\n",
                                 value, value);
                    bad |= tb_text(&needle[j], es->tok, line);
                    need_tokens += needle[j].n;
                }
                if (vt_task)
                    snprintf(question, sizeof question,
                             "\n\nQuestion: what is the value of VAR %s? Answer: the value of "
                             "VAR %s is",
                             word, word);
                else if (needle_task)
                    snprintf(question, sizeof question,
                             "\n\nWhat is the special magic number for %s mentioned in the "
                             "provided text? The special magic number for %s mentioned in the "
                             "provided text is",
                             word, word);
                else
                    snprintf(question, sizeof question,
                             "\n\nWhat is the pass key? The pass key is");
                snprintf(answer, sizeof answer, " %s", value);
                /* question and answer tokenized together; the answer starts at
                 * the first token after the question's own tokens that holds a digit */
                char qa[600];
                snprintf(qa, sizeof qa, "%s%s", question, answer);
                bad |= tb_text(&q, es->tok, qa);
                int64_t split = q.n;
                for (int64_t i = 0; i < q.n && !bad; i++) {
                    char piece[64];
                    lm_decode_token(es->tok, q.ids[i], piece, sizeof piece);
                    if (strpbrk(piece, "0123456789")) {
                        split = i;
                        break;
                    }
                }
                if (!bad) bad |= tb_push(&ans, q.ids + split, q.n - split);
                q.n = split;
                const int64_t F = lengths[li] - pre.n - need_tokens - q.n;
                const tokbuf *fb = &fill[ti];
                if (bad || F < 64 || F > fb->n) {
                    rc = bad ? tool_error("eval: out of memory building a prompt")
                             : tool_error("eval: length %lld does not fit the filler",
                                          (long long)lengths[li]);
                } else {
                    int64_t off = (int64_t)(rng_next(&rng) % (uint64_t)(fb->n - F + 1));
                    /* needles in filler order */
                    int order[64];
                    for (int j = 0; j < n_need; j++) order[j] = j;
                    for (int i = 1; i < n_need; i++)
                        for (int j = i; j > 0 && pos_frac[order[j]] < pos_frac[order[j - 1]]; j--) {
                            int t = order[j];
                            order[j] = order[j - 1];
                            order[j - 1] = t;
                        }
                    bad |= tb_push(&prompt, pre.ids, pre.n);
                    int64_t at = 0;
                    for (int j = 0; j < n_need && !bad; j++) {
                        int64_t cut = F * pos_frac[order[j]] / 10000;
                        bad |= tb_push(&prompt, fb->ids + off + at, cut - at);
                        bad |= tb_push(&prompt, needle[order[j]].ids, needle[order[j]].n);
                        at = cut;
                    }
                    if (!bad) bad |= tb_push(&prompt, fb->ids + off + at, F - at);
                    if (!bad) bad |= tb_push(&prompt, q.ids, q.n);
                    const int64_t P = prompt.n, A = ans.n, n = P + A;
                    if (!bad) bad |= tb_push(&prompt, ans.ids, ans.n);
                    float *hid = bad ? NULL : malloc((size_t)n * (size_t)m->d_model * sizeof(float));
                    float *logits = hid ? malloc((size_t)A * (size_t)m->n_vocab * sizeof(float))
                                        : NULL;
                    if (!logits) rc = tool_error("eval: out of memory");
                    if (!rc && li == 0 && di == 0 && ki == 0) {
                        printf("# answer tokens:");
                        for (int64_t i = 0; i < A; i++) {
                            char piece[64];
                            lm_decode_token(es->tok, ans.ids[i], piece, sizeof piece);
                            printf(" [%s]", piece);
                        }
                        printf("\n");
                    }
                    stem_config dense;
                    stem_config_init(&dense);
                    dense.selector = STEM_SELECTOR_DENSE;
                    /* --key-from: the prompt was built (the generator's stream
                     * stays the same), but is not run */
                    for (int c = -1; c < n_cfgs && !rc && ki >= a->key_from; c++) {
                        eval_config dc = {.cfg = dense};
                        snprintf(dc.label, sizeof dc.label, "dense");
                        eval_config *cc = c < 0 ? &dc : &cfgs[c];
                        if (eval_prepare_config(es, cc, P)) {
                            rc = 1;
                            break;
                        }
                        double t0 = tool_now_ms(), density = 1.0;
                        es->h.dense_from = P;
                        rc = eval_forward_config(es, cc, prompt.ids, n, hid, &density);
                        es->h.dense_from = 0;
                        if (rc) break;
                        answer_score r;
                        score_answer(m, hid, P, ans.ids, A, logits, &r);
                        double sec = (tool_now_ms() - t0) / 1000.0;
                        const stem_config *k = &cc->cfg;
                        printf("%-8s %6lld %5lld %4lld %-10s %-34s %8.4f %8.4f %5d %8.4f %5d "
                               "%7.1f\n",
                               a->task, (long long)P, (long long)depths[di], (long long)ki,
                               value, cc->label, density, r.p_first, r.top1_first, r.nll_rest,
                               r.exact, sec);
                        fflush(stdout);
                        if (res) {
                            fprintf(res,
                                    "%s\t%lld\t%lld\t%lld\t%lld\t%s\t%d\t%s\t%s\t%d\t%d\t%g\t%g"
                                    "\t%d\t%.6f\t%.6e\t%d\t%.6f\t%d\t%.1f\t%s\t%lld\t%d\n",
                                    a->task, (long long)lengths[li], (long long)P,
                                    (long long)depths[di], (long long)ki, value, ti, cc->label,
                                    stem_selector_name(k->selector), k->block_size,
                                    k->selector == STEM_SELECTOR_UNIFORM ? k->uniform_k
                                                                         : k->k_start,
                                    (double)k->xattn_threshold, k->mu, k->dense_layers, density,
                                    r.p_first, r.top1_first, r.nll_rest, r.exact, sec,
                                    es->commit, (long long)a->seed, n_need);
                            fflush(res);
                        }
                    }
                    free(hid);
                    free(logits);
                }
                free(pre.ids);
                free(q.ids);
                free(ans.ids);
                free(prompt.ids);
                for (int j = 0; j < n_need; j++) free(needle[j].ids);
            }
    if (res) fclose(res);
    for (int i = 0; i < n_fill; i++) free(fill[i].ids);
    return rc;
}
