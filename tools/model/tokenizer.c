#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* open-addressing string -> int table */
typedef struct str_table {
    const char **keys;
    uint32_t *lens;
    int32_t *vals;
    uint64_t cap;
} str_table;

struct bpe_tokenizer {
    int32_t n_vocab;
    char **tokens;          /* NUL-terminated token strings (byte-level alphabet) */
    str_table vocab;        /* token string -> id */
    str_table merges;       /* "left right" -> rank */
    char **merge_strings;   /* owned copies of the merge keys */
    int64_t n_merges;
    char byte_to_utf8[256][3]; /* byte-level alphabet: UTF-8 of each byte's char */
    int16_t utf8_to_byte[512]; /* code point (< 512) -> byte, -1 if none */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int table_init(str_table *t, uint64_t n)
{
    t->cap = 1;
    while (t->cap < 2 * n + 16) t->cap <<= 1;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->lens = calloc(t->cap, sizeof *t->lens);
    t->vals = calloc(t->cap, sizeof *t->vals);
    return t->keys && t->lens && t->vals ? 0 : -1;
}

static void table_free(str_table *t)
{
    free(t->keys);
    free(t->lens);
    free(t->vals);
}

/* keeps the first value of a duplicate key */
static void table_put(str_table *t, const char *key, size_t n, int32_t val)
{
    uint64_t i = hash_bytes(key, n) & (t->cap - 1);
    while (t->keys[i]) {
        if (t->lens[i] == n && memcmp(t->keys[i], key, n) == 0) return;
        i = (i + 1) & (t->cap - 1);
    }
    t->keys[i] = key;
    t->lens[i] = (uint32_t)n;
    t->vals[i] = val;
}

static int32_t table_get(const str_table *t, const char *key, size_t n)
{
    uint64_t i = hash_bytes(key, n) & (t->cap - 1);
    while (t->keys[i]) {
        if (t->lens[i] == n && memcmp(t->keys[i], key, n) == 0) return t->vals[i];
        i = (i + 1) & (t->cap - 1);
    }
    return -1;
}

static int utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2; /* the byte-level alphabet stays below U+0800 */
}

/* GPT-2's reversible byte -> printable character map */
static void build_byte_alphabet(bpe_tokenizer *t)
{
    int next = 256;
    for (int i = 0; i < 512; i++) t->utf8_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)next++;
        memset(t->byte_to_utf8[b], 0, 3);
        utf8_put(t->byte_to_utf8[b], cp);
        t->utf8_to_byte[cp] = (int16_t)b;
    }
}

int bpe_tokenizer_load(const gguf_file *f, bpe_tokenizer **out, char *err, size_t err_len)
{
    *out = NULL;
    char model[32] = "";
    gguf_get_string(f, "tokenizer.ggml.model", model, sizeof model);
    if (strcmp(model, "gpt2") != 0) {
        snprintf(err, err_len, "tokenizer model '%s' is not byte-level BPE (gpt2)", model);
        return -1;
    }
    const gguf_kv *tk = gguf_find(f, "tokenizer.ggml.tokens");
    const gguf_kv *mk = gguf_find(f, "tokenizer.ggml.merges");
    if (!tk || !mk || tk->type != GGUF_ARRAY || mk->type != GGUF_ARRAY ||
        tk->array_type != GGUF_STRING || mk->array_type != GGUF_STRING) {
        snprintf(err, err_len, "GGUF lacks tokenizer.ggml.tokens / merges");
        return -1;
    }
    bpe_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    build_byte_alphabet(t);
    t->n_vocab = (int32_t)tk->array_len;
    t->n_merges = (int64_t)mk->array_len;
    t->tokens = calloc((size_t)t->n_vocab, sizeof *t->tokens);
    t->merge_strings = calloc((size_t)t->n_merges, sizeof *t->merge_strings);
    if (!t->tokens || !t->merge_strings || table_init(&t->vocab, (uint64_t)t->n_vocab) ||
        table_init(&t->merges, (uint64_t)t->n_merges))
        goto oom;
    const uint8_t *p = tk->value;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint64_t len;
        const char *s = gguf_next_string(&p, &len);
        t->tokens[i] = malloc(len + 1);
        if (!t->tokens[i]) goto oom;
        memcpy(t->tokens[i], s, len);
        t->tokens[i][len] = 0;
        table_put(&t->vocab, t->tokens[i], len, i);
    }
    p = mk->value;
    for (int64_t i = 0; i < t->n_merges; i++) {
        uint64_t len;
        const char *s = gguf_next_string(&p, &len);
        t->merge_strings[i] = malloc(len + 1);
        if (!t->merge_strings[i]) goto oom;
        memcpy(t->merge_strings[i], s, len);
        t->merge_strings[i][len] = 0;
        table_put(&t->merges, t->merge_strings[i], len, (int32_t)i);
    }
    *out = t;
    return 0;
oom:
    bpe_tokenizer_free(t);
    snprintf(err, err_len, "out of memory loading the tokenizer");
    return -1;
}

void bpe_tokenizer_free(bpe_tokenizer *t)
{
    if (!t) return;
    if (t->tokens)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->tokens[i]);
    if (t->merge_strings)
        for (int64_t i = 0; i < t->n_merges; i++) free(t->merge_strings[i]);
    free(t->tokens);
    free(t->merge_strings);
    table_free(&t->vocab);
    table_free(&t->merges);
    free(t);
}

int32_t bpe_vocab_size(const bpe_tokenizer *t) { return t->n_vocab; }

/* ---------------------------------------------------------- pre-tokenizer */

typedef struct cpoint {
    uint32_t cp;
    uint32_t off, len; /* byte span in the text */
} cpoint;

static uint32_t utf8_decode(const unsigned char *s, size_t n, uint32_t *len)
{
    unsigned c = s[0];
    int need = c < 0x80 ? 0 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
    if (need <= 0 || (size_t)need + 1 > n) {
        *len = 1;
        return c; /* ASCII, or a stray byte kept as itself */
    }
    uint32_t cp = c & (0x3f >> need);
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return c;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *len = (uint32_t)need + 1;
    return cp;
}

static int is_space(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* Letters: ASCII letters, and outside ASCII everything that is not a space,
 * digit-like or one of the common punctuation/symbol ranges (an
 * approximation of \p{L} that is exact for ASCII text). */
static int is_letter(uint32_t c)
{
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    if (is_space(c)) return 0;
    if (c < 0xc0) return c == 0xaa || c == 0xb5 || c == 0xba;
    if (c == 0xd7 || c == 0xf7) return 0;
    if (c >= 0x2000 && c <= 0x2bff) return 0; /* punctuation, symbols, arrows */
    if (c >= 0x3000 && c <= 0x303f) return 0;
    if (c >= 0xff00 && c <= 0xff0f) return 0;
    return 1;
}

static int is_number(uint32_t c)
{
    return is_digit(c) || c == 0xb2 || c == 0xb3 || c == 0xb9 || (c >= 0xbc && c <= 0xbe);
}

/* Length (in code points) of the GPT-2 regex match at cps[i], within [i, end):
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_at(const cpoint *cps, size_t i, size_t end)
{
    uint32_t c = cps[i].cp;
    if (c == '\'' && i + 1 < end) {
        uint32_t a = cps[i + 1].cp, b = i + 2 < end ? cps[i + 2].cp : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    size_t j = i;
    if (c == ' ' && i + 1 < end) j = i + 1;
    uint32_t d = cps[j].cp;
    if (j == i + 1 || c != ' ') {
        size_t k = j;
        if (is_letter(d)) {
            while (k < end && is_letter(cps[k].cp)) k++;
            return k - i;
        }
        if (is_number(d)) {
            while (k < end && is_number(cps[k].cp)) k++;
            return k - i;
        }
        if (!is_space(d)) {
            while (k < end && !is_space(cps[k].cp) && !is_letter(cps[k].cp) &&
                   !is_number(cps[k].cp))
                k++;
            return k - i;
        }
    }
    /* whitespace run: leave its last character to prefix the next word */
    size_t k = i;
    while (k < end && is_space(cps[k].cp)) k++;
    if (k == end || k - i == 1) return k - i;
    return k - i - 1;
}

/* --------------------------------------------------------------- BPE merge */


/* Merges the symbols of one piece by rank; writes ids. Returns the count
 * or -1 (out of memory). */
static int64_t bpe_piece(const bpe_tokenizer *t, const char *bytes, size_t n, int32_t *ids,
                         int64_t cap, int64_t at)
{
    char **syms = malloc(n * sizeof *syms);
    size_t *slen = malloc(n * sizeof *slen);
    char *pool = malloc(n * 2 * n + 1); /* worst case: all merged into one */
    char *key = malloc(n * 4 + 2);
    if (!syms || !slen || !pool || !key) {
        free(syms); free(slen); free(pool); free(key);
        return -1;
    }
    size_t pool_used = 0, ns = n;
    for (size_t i = 0; i < n; i++) {
        const char *u = t->byte_to_utf8[(uint8_t)bytes[i]];
        size_t ul = strlen(u);
        syms[i] = pool + pool_used;
        memcpy(syms[i], u, ul);
        slen[i] = ul;
        pool_used += ul;
    }
    for (;;) {
        int32_t best = -1;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            memcpy(key, syms[i], slen[i]);
            key[slen[i]] = ' ';
            memcpy(key + slen[i] + 1, syms[i + 1], slen[i + 1]);
            int32_t r = table_get(&t->merges, key, slen[i] + 1 + slen[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) {
                best = r;
                best_i = i;
            }
        }
        if (best < 0) break;
        /* merged symbols stay contiguous in the pool, since symbols are adjacent spans */
        size_t i = best_i;
        char *merged = pool + pool_used;
        memcpy(merged, syms[i], slen[i]);
        memcpy(merged + slen[i], syms[i + 1], slen[i + 1]);
        pool_used += slen[i] + slen[i + 1];
        syms[i] = merged;
        slen[i] += slen[i + 1];
        memmove(syms + i + 1, syms + i + 2, (ns - i - 2) * sizeof *syms);
        memmove(slen + i + 1, slen + i + 2, (ns - i - 2) * sizeof *slen);
        ns--;
    }
    int64_t count = 0;
    for (size_t i = 0; i < ns; i++) {
        int32_t id = table_get(&t->vocab, syms[i], slen[i]);
        if (id >= 0) {
            if (at + count < cap) ids[at + count] = id;
            count++;
            continue;
        }
        /* not in the vocabulary: fall back to its single characters */
        for (size_t o = 0; o < slen[i];) {
            size_t cl = ((uint8_t)syms[i][o] & 0xe0) == 0xc0 ? 2 : 1;
            int32_t cid = table_get(&t->vocab, syms[i] + o, cl);
            if (cid >= 0) {
                if (at + count < cap) ids[at + count] = cid;
                count++;
            }
            o += cl;
        }
    }
    free(syms); free(slen); free(pool); free(key);
    return count;
}

int64_t bpe_encode(const bpe_tokenizer *t, const char *text, size_t len, int32_t *ids,
                   int64_t cap)
{
    cpoint *cps = malloc((len + 1) * sizeof *cps);
    if (!cps) return -1;
    size_t n = 0;
    for (size_t o = 0; o < len;) {
        uint32_t l;
        uint32_t cp = utf8_decode((const unsigned char *)text + o, len - o, &l);
        cps[n].cp = cp;
        cps[n].off = (uint32_t)o;
        cps[n].len = l;
        n++;
        o += l;
    }
    int64_t total = 0;
    size_t i = 0;
    while (i < n) {
        /* a piece ends at each digit, and each digit is a piece of its own */
        size_t end = i;
        if (is_number(cps[i].cp)) {
            end = i + 1;
        } else {
            while (end < n && !is_number(cps[end].cp)) end++;
        }
        size_t p = i;
        while (p < end) {
            size_t m = is_number(cps[p].cp) && end == p + 1 ? 1 : match_at(cps, p, end);
            if (m == 0) m = 1;
            size_t boff = cps[p].off, blen = cps[p + m - 1].off + cps[p + m - 1].len - boff;
            int64_t c = bpe_piece(t, text + boff, blen, ids, cap, total);
            if (c < 0) {
                free(cps);
                return -1;
            }
            total += c;
            p += m;
        }
        i = end;
    }
    free(cps);
    return total;
}

size_t bpe_decode_token(const bpe_tokenizer *t, int32_t id, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0) return 0;
    if (id >= 0 && id < t->n_vocab) {
        const char *s = t->tokens[id];
        size_t sl = strlen(s);
        for (size_t o = 0; o < sl && n + 1 < cap;) {
            uint32_t l;
            uint32_t cp = utf8_decode((const unsigned char *)s + o, sl - o, &l);
            int b = cp < 512 ? t->utf8_to_byte[cp] : -1;
            if (b >= 0) {
                out[n++] = (char)b;
            } else { /* special tokens are plain text */
                for (uint32_t q = 0; q < l && n + 1 < cap; q++) out[n++] = s[o + q];
            }
            o += l;
        }
    }
    out[n] = 0;
    return n;
}
