#include "spm_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_BYTE = 6 };

struct spm_tokenizer {
    int32_t n_vocab;
    char **text;             /* NUL-terminated token strings */
    uint32_t *len;
    float *score;
    int32_t *type;
    /* token text -> id (open addressing) */
    int32_t *slots;
    uint64_t cap;
    int32_t byte_id[256];    /* <0xXX> tokens */
    int32_t *user;           /* user-defined tokens, longest first */
    int32_t n_user;
    uint8_t user_first[256]; /* first bytes of user-defined tokens */
    int32_t bos;             /* -1: none added */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int32_t lookup(const spm_tokenizer *t, const char *s, size_t n)
{
    for (uint64_t i = hash_bytes(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->text[id], s, n) == 0) return id;
    }
}

static const spm_tokenizer *sort_ctx; /* qsort has no context argument */

/* longest first, then by id */
static int cmp_user(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sort_ctx->len[x] != sort_ctx->len[y]) return sort_ctx->len[x] > sort_ctx->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int spm_tokenizer_load(const gguf_file *f, spm_tokenizer **out, char *err, size_t err_len)
{
    *out = NULL;
    char model[32] = "";
    gguf_get_string(f, "tokenizer.ggml.model", model, sizeof model);
    if (strcmp(model, "llama") != 0) {
        snprintf(err, err_len, "tokenizer model '%s' is not SentencePiece (llama)", model);
        return -1;
    }
    const gguf_kv *tk = gguf_find(f, "tokenizer.ggml.tokens");
    const gguf_kv *sk = gguf_find(f, "tokenizer.ggml.scores");
    const gguf_kv *yk = gguf_find(f, "tokenizer.ggml.token_type");
    if (!tk || !sk || !yk || tk->type != GGUF_ARRAY || tk->array_type != GGUF_STRING ||
        sk->type != GGUF_ARRAY || sk->array_type != GGUF_F32 || yk->type != GGUF_ARRAY ||
        yk->array_type != GGUF_I32 || sk->array_len != tk->array_len ||
        yk->array_len != tk->array_len) {
        snprintf(err, err_len, "GGUF lacks tokenizer.ggml.tokens / scores / token_type");
        return -1;
    }
    if (gguf_get_int(f, "tokenizer.ggml.add_space_prefix", 0)) {
        snprintf(err, err_len, "SentencePiece with add_space_prefix is not supported");
        return -1;
    }
    spm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->n_vocab = (int32_t)tk->array_len;
    t->text = calloc((size_t)t->n_vocab, sizeof *t->text);
    t->len = calloc((size_t)t->n_vocab, sizeof *t->len);
    t->score = malloc((size_t)t->n_vocab * sizeof *t->score);
    t->type = malloc((size_t)t->n_vocab * sizeof *t->type);
    t->user = malloc((size_t)t->n_vocab * sizeof *t->user);
    t->cap = 1;
    while (t->cap < 2 * (uint64_t)t->n_vocab + 16) t->cap <<= 1;
    t->slots = malloc(t->cap * sizeof *t->slots);
    if (!t->text || !t->len || !t->score || !t->type || !t->user || !t->slots) goto oom;
    memcpy(t->score, sk->value, (size_t)t->n_vocab * 4);
    memcpy(t->type, yk->value, (size_t)t->n_vocab * 4);
    for (uint64_t i = 0; i < t->cap; i++) t->slots[i] = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    const uint8_t *p = tk->value;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint64_t len;
        const char *s = gguf_next_string(&p, &len);
        t->text[i] = malloc(len + 1);
        if (!t->text[i]) goto oom;
        memcpy(t->text[i], s, len);
        t->text[i][len] = 0;
        t->len[i] = (uint32_t)len;
        if (lookup(t, s, len) < 0) { /* first of duplicates wins */
            uint64_t h = hash_bytes(s, len) & (t->cap - 1);
            while (t->slots[h] >= 0) h = (h + 1) & (t->cap - 1);
            t->slots[h] = i;
        }
        unsigned bv;
        if (t->type[i] == TT_BYTE && len == 6 && sscanf(t->text[i], "<0x%02X>", &bv) == 1)
            t->byte_id[bv & 255] = i;
        if (t->type[i] == TT_USER && len > 0) {
            t->user[t->n_user++] = i;
            t->user_first[(uint8_t)s[0]] = 1;
        }
    }
    sort_ctx = t;
    qsort(t->user, (size_t)t->n_user, sizeof *t->user, cmp_user);
    t->bos = gguf_get_int(f, "tokenizer.ggml.add_bos_token", 0)
                 ? (int32_t)gguf_get_int(f, "tokenizer.ggml.bos_token_id", -1)
                 : -1;
    *out = t;
    return 0;
oom:
    spm_tokenizer_free(t);
    snprintf(err, err_len, "out of memory loading the tokenizer");
    return -1;
}

void spm_tokenizer_free(spm_tokenizer *t)
{
    if (!t) return;
    if (t->text)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->text[i]);
    free(t->text);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->user);
    free(t->slots);
    free(t);
}

int32_t spm_vocab_size(const spm_tokenizer *t) { return t->n_vocab; }

/* ----------------------------------------------------- bigram merging */

typedef struct symbol {
    int32_t prev, next;  /* linked list over the piece; -1 at the ends */
    uint32_t off, n;     /* byte span in the escaped piece; n = 0 once merged away */
} symbol;

typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t size;       /* bytes of the merged text when queued */
} bigram;

typedef struct heap {
    bigram *v;
    size_t n, cap;
} heap;

/* higher score first; on ties the leftmost */
static int before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(heap *h, bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && before(&b, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = b;
    return 0;
}

static bigram heap_pop(heap *h)
{
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) c++;
        if (!before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static int try_bigram(const spm_tokenizer *t, const char *s, const symbol *sym, int32_t l,
                      int32_t r, heap *h)
{
    if (l < 0 || r < 0) return 0;
    int32_t id = lookup(t, s + sym[l].off, sym[l].n + sym[r].n);
    if (id < 0) return 0;
    bigram b = {t->score[id], l, r, sym[l].n + sym[r].n};
    return heap_push(h, b);
}

static void emit(int32_t id, int32_t *ids, int64_t cap, int64_t *count)
{
    if (*count < cap) ids[*count] = id;
    (*count)++;
}

/* One fragment without user-defined tokens: spaces escaped to U+2581,
 * then the highest-scoring adjacent merges until none is a token; symbols
 * that are not tokens fall back to byte tokens. */
static int encode_fragment(const spm_tokenizer *t, const char *text, size_t len, int32_t *ids,
                           int64_t cap, int64_t *count)
{
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    const size_t elen = len + 2 * spaces;
    char *s = malloc(elen + 1);
    symbol *sym = malloc((elen + 1) * sizeof *sym);
    heap h = {0};
    if (!s || !sym) goto oom;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            s[o++] = text[i];
        }
    }
    int32_t ns = 0;
    for (size_t i = 0; i < elen;) {
        unsigned c = (uint8_t)s[i];
        size_t cl = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        if (cl > elen - i) cl = elen - i;
        sym[ns] = (symbol){ns - 1, ns + 1, (uint32_t)i, (uint32_t)cl};
        ns++;
        i += cl;
    }
    if (ns) sym[ns - 1].next = -1;
    for (int32_t i = 1; i < ns; i++)
        if (try_bigram(t, s, sym, i - 1, i, &h)) goto oom;
    while (h.n) {
        bigram b = heap_pop(&h);
        symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        if (try_bigram(t, s, sym, l->prev, b.left, &h) ||
            try_bigram(t, s, sym, b.left, l->next, &h))
            goto oom;
    }
    for (int32_t i = 0; i != -1 && ns; i = sym[i].next) {
        int32_t id = lookup(t, s + sym[i].off, sym[i].n);
        if (id >= 0) {
            emit(id, ids, cap, count);
        } else {
            for (uint32_t j = 0; j < sym[i].n; j++) {
                int32_t bid = t->byte_id[(uint8_t)s[sym[i].off + j]];
                if (bid >= 0) emit(bid, ids, cap, count);
            }
        }
    }
    free(s);
    free(sym);
    free(h.v);
    return 0;
oom:
    free(s);
    free(sym);
    free(h.v);
    return -1;
}

int64_t spm_encode(const spm_tokenizer *t, const char *text, size_t len, int32_t *ids,
                   int64_t cap)
{
    int64_t count = 0;
    if (t->bos >= 0) emit(t->bos, ids, cap, &count);
    /* user-defined tokens (newline and space runs, ...) are cut out of the
     * raw text first, the longest match at each position */
    size_t start = 0, i = 0;
    while (i < len) {
        int32_t hit = -1;
        for (int32_t u = 0; t->user_first[(uint8_t)text[i]] && u < t->n_user; u++) {
            int32_t id = t->user[u];
            if (t->len[id] <= len - i && memcmp(text + i, t->text[id], t->len[id]) == 0) {
                hit = id;
                break;
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        if (i > start && encode_fragment(t, text + start, i - start, ids, cap, &count)) return -1;
        emit(hit, ids, cap, &count);
        i += t->len[hit];
        start = i;
    }
    if (len > start && encode_fragment(t, text + start, len - start, ids, cap, &count)) return -1;
    return count;
}

size_t spm_decode_token(const spm_tokenizer *t, int32_t id, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0) return 0;
    if (id >= 0 && id < t->n_vocab) {
        const char *s = t->text[id];
        unsigned bv;
        if (t->type[id] == TT_BYTE && sscanf(s, "<0x%02X>", &bv) == 1) {
            if (cap > 1) out[n++] = (char)bv;
        } else if (t->type[id] != TT_CONTROL) {
            for (size_t o = 0; s[o] && n + 1 < cap;) {
                if (!strncmp(s + o, "\xe2\x96\x81", 3)) {
                    out[n++] = ' ';
                    o += 3;
                } else {
                    out[n++] = s[o++];
                }
            }
        }
    }
    out[n] = 0;
    return n;
}
