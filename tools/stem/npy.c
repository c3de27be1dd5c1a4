/* Strict .npy I/O: see npy.h. The header dict is parsed with a tiny
 * hand-written grammar (no eval), every index is bounds-checked. */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

static int fail(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

size_t npy_dtype_size(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F32: return 4;
    case NPY_F16: return 2;
    case NPY_U16: return 2;
    case NPY_I32: return 4;
    }
    return 0;
}

const char *npy_dtype_descr(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F32: return "<f4";
    case NPY_F16: return "<f2";
    case NPY_U16: return "<u2";
    case NPY_I32: return "<i4";
    }
    return "?";
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* The file is little-endian; only big-endian hosts need this. */
static void swap_bytes(void *data, size_t count, size_t size) {
    uint8_t *p = data;
    for (size_t i = 0; i < count; i++, p += size) {
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

/* ------------------------------------------------------------ header dict */

typedef struct cursor {
    const char *start, *p, *end;
    char *err;
    size_t errlen;
} cursor;

static int cfail(cursor *c, const char *what) {
    return fail(c->err, c->errlen, "npy header: %s at header byte %td", what, c->p - c->start);
}

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch) {
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A Python string literal without escapes (numpy never writes any here). */
static int parse_string(cursor *c, char *dst, size_t cap) {
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return cfail(c, "expected a quoted string");
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || *c->p == '\n')
            return cfail(c, "escape or newline in string");
        if (n + 1 >= cap)
            return cfail(c, "string too long");
        dst[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return cfail(c, "unterminated string");
    c->p++;
    dst[n] = '\0';
    return 0;
}

static int is_ident_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

static int accept_word(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return 0;
    if (c->p + n < c->end && is_ident_char(c->p[n]))
        return 0;
    c->p += n;
    return 1;
}

static int parse_bool(cursor *c, int *out) {
    if (accept_word(c, "True")) {
        *out = 1;
        return 0;
    }
    if (accept_word(c, "False")) {
        *out = 0;
        return 0;
    }
    return cfail(c, "expected True or False");
}

/* Non-negative decimal integer; "L" suffix accepted for Python 2 files. */
static int parse_dim(cursor *c, int64_t *out) {
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return cfail(c, "expected a non-negative integer");
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return cfail(c, "integer with a leading zero");
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p - '0';
        if (v > (INT64_MAX - digit) / 10)
            return cfail(c, "dimension overflows int64");
        v = v * 10 + digit;
        c->p++;
    }
    accept(c, 'L');
    if (c->p < c->end && is_ident_char(*c->p))
        return cfail(c, "junk after integer");
    *out = v;
    return 0;
}

/* A Python tuple of ints: "()", "(5,)", "(2, 3)", "(2, 3,)". */
static int parse_shape(cursor *c, npy_array *a) {
    if (!accept(c, '('))
        return cfail(c, "shape must be a tuple");
    a->ndim = 0;
    skip_ws(c);
    if (accept(c, ')'))
        return 0;
    for (;;) {
        if (a->ndim >= NPY_MAX_DIMS)
            return cfail(c, "too many dimensions");
        if (parse_dim(c, &a->shape[a->ndim]) != 0)
            return -1;
        a->ndim++;
        skip_ws(c);
        if (accept(c, ',')) {
            skip_ws(c);
            if (accept(c, ')'))
                return 0;
            continue;
        }
        if (accept(c, ')')) {
            if (a->ndim == 1) /* "(5)" is an int in Python, not a tuple */
                return cfail(c, "one-element shape needs a trailing comma");
            return 0;
        }
        return cfail(c, "expected ',' or ')' in shape");
    }
}

static int parse_descr(cursor *c, npy_array *a) {
    char s[32];
    if (parse_string(c, s, sizeof s) != 0)
        return -1;
    static const struct {
        const char *descr;
        npy_dtype dtype;
    } known[] = {{"<f4", NPY_F32}, {"<f2", NPY_F16}, {"<u2", NPY_U16}, {"<i4", NPY_I32}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(s, known[i].descr) == 0) {
            a->dtype = known[i].dtype;
            return 0;
        }
    }
    if (s[0] == '>')
        return fail(c->err, c->errlen, "npy: big-endian dtype '%s' not supported", s);
    return fail(c->err, c->errlen,
                "npy: dtype '%s' not supported (supported: <f4, <f2, <u2 for bf16, <i4)", s);
}

/* {'descr': ..., 'fortran_order': False, 'shape': (...), } with the three
 * keys exactly once each, in any order. */
static int parse_dict(cursor *c, npy_array *a) {
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    skip_ws(c);
    if (!accept(c, '{'))
        return cfail(c, "header is not a dict");
    skip_ws(c);
    while (!accept(c, '}')) {
        char key[32];
        if (parse_string(c, key, sizeof key) != 0)
            return -1;
        skip_ws(c);
        if (!accept(c, ':'))
            return cfail(c, "expected ':'");
        skip_ws(c);
        if (strcmp(key, "descr") == 0) {
            if (seen_descr++)
                return cfail(c, "duplicate key 'descr'");
            if (parse_descr(c, a) != 0)
                return -1;
        } else if (strcmp(key, "fortran_order") == 0) {
            int fortran = 0;
            if (seen_order++)
                return cfail(c, "duplicate key 'fortran_order'");
            if (parse_bool(c, &fortran) != 0)
                return -1;
            if (fortran)
                return fail(c->err, c->errlen,
                            "npy: fortran_order arrays not supported "
                            "(save np.ascontiguousarray(x))");
        } else if (strcmp(key, "shape") == 0) {
            if (seen_shape++)
                return cfail(c, "duplicate key 'shape'");
            if (parse_shape(c, a) != 0)
                return -1;
        } else {
            return cfail(c, "unknown key");
        }
        skip_ws(c);
        if (accept(c, ',')) {
            skip_ws(c);
            continue;
        }
        if (accept(c, '}'))
            break;
        return cfail(c, "expected ',' or '}'");
    }
    skip_ws(c);
    if (c->p != c->end)
        return cfail(c, "junk after the dict");
    if (!seen_descr || !seen_order || !seen_shape)
        return fail(c->err, c->errlen, "npy header: missing %s",
                    !seen_descr ? "'descr'" : !seen_order ? "'fortran_order'" : "'shape'");
    return 0;
}

int npy_parse_header(const uint8_t *buf, size_t len, npy_array *out, size_t *data_offset,
                     size_t *need, char *err, size_t errlen) {
    if (need)
        *need = 0;
    if (!buf || !out || !data_offset)
        return fail(err, errlen, "npy: NULL argument");
    memset(out, 0, sizeof *out);
    if (len < 10) {
        if (need)
            *need = 12;
        return fail(err, errlen, "npy: file too short (%zu bytes) for a header", len);
    }
    if (memcmp(buf, npy_magic, sizeof npy_magic) != 0)
        return fail(err, errlen, "npy: bad magic (not a .npy file)");
    uint8_t major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return fail(err, errlen, "npy: unsupported format version %u.%u", major, minor);
    size_t prefix, hlen;
    if (major == 1) {
        prefix = 10;
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
    } else {
        prefix = 12;
        if (len < 12) {
            if (need)
                *need = 12;
            return fail(err, errlen, "npy: file too short for a v%u header", major);
        }
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
               (size_t)buf[11] << 24;
    }
    if (hlen > NPY_MAX_HEADER_BYTES)
        return fail(err, errlen, "npy: header length %zu exceeds the %u-byte limit", hlen,
                    NPY_MAX_HEADER_BYTES);
    if (len - prefix < hlen) {
        if (need)
            *need = prefix + hlen;
        return fail(err, errlen, "npy: header says %zu bytes but only %zu follow", hlen,
                    len - prefix);
    }
    const char *h = (const char *)buf + prefix;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch > 0x7e || (ch < 0x20 && ch != '\n' && ch != '\r' && ch != '\t'))
            return fail(err, errlen, "npy header: non-ASCII or control byte 0x%02x at %zu", ch,
                        i);
    }
    cursor c = {h, h, h + hlen, err, errlen};
    if (parse_dict(&c, out) != 0)
        return -1;

    size_t count = 1;
    for (int i = 0; i < out->ndim; i++) {
        uint64_t dim = (uint64_t)out->shape[i];
        if (dim > SIZE_MAX || (dim != 0 && count > SIZE_MAX / (size_t)dim))
            return fail(err, errlen, "npy: shape overflows the address space");
        count *= (size_t)dim;
    }
    size_t esize = npy_dtype_size(out->dtype);
    if (count > SIZE_MAX / esize)
        return fail(err, errlen, "npy: array size overflows the address space");
    out->count = count;
    out->nbytes = count * esize;
    *data_offset = prefix + hlen;
    return 0;
}

int npy_parse_buffer(const void *buf, size_t len, npy_array *out, char *err, size_t errlen) {
    size_t off;
    if (npy_parse_header(buf, len, out, &off, NULL, err, errlen) != 0)
        return -1;
    if (len - off != out->nbytes) {
        npy_free(out);
        return fail(err, errlen, "npy: header describes %zu data bytes but %zu are present",
                    out->nbytes, len - off);
    }
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data)
        return fail(err, errlen, "npy: out of memory for %zu bytes", out->nbytes);
    memcpy(out->data, (const uint8_t *)buf + off, out->nbytes);
    if (!host_is_little_endian())
        swap_bytes(out->data, out->count, npy_dtype_size(out->dtype));
    return 0;
}

/* fread that loops (large reads may come back short on some systems). */
static int read_all(FILE *f, void *dst, size_t n) {
    uint8_t *p = dst;
    while (n) {
        size_t got = fread(p, 1, n, f);
        if (got == 0)
            return -1;
        p += got;
        n -= got;
    }
    return 0;
}

int npy_read_file(const char *path, npy_array *out, char *err, size_t errlen) {
    if (!path || !out)
        return fail(err, errlen, "npy: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(err, errlen, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX) {
        fclose(f);
        return fail(err, errlen, "%s: file too large", path);
    }
    size_t fsize = (size_t)st.st_size;

    /* Read the fixed prefix, then exactly the header it announces (bounded
     * by the file size and NPY_MAX_HEADER_BYTES), then the data. */
    uint8_t small[12];
    size_t first = fsize < sizeof small ? fsize : sizeof small;
    uint8_t *hbuf = NULL;
    size_t off = 0, need = 0;
    char msg[256];
    if (read_all(f, small, first) != 0) {
        fclose(f);
        return fail(err, errlen, "%s: read error", path);
    }
    if (npy_parse_header(small, first, out, &off, &need, msg, sizeof msg) != 0) {
        if (need <= first || need > fsize) {
            fclose(f);
            if (need > fsize)
                return fail(err, errlen, "%s: truncated header (%zu bytes needed, file has %zu)",
                            path, need, fsize);
            return fail(err, errlen, "%s: %s", path, msg);
        }
        hbuf = malloc(need);
        if (!hbuf) {
            fclose(f);
            return fail(err, errlen, "%s: out of memory", path);
        }
        memcpy(hbuf, small, first);
        if (read_all(f, hbuf + first, need - first) != 0) {
            free(hbuf);
            fclose(f);
            return fail(err, errlen, "%s: read error", path);
        }
        int rc = npy_parse_header(hbuf, need, out, &off, NULL, msg, sizeof msg);
        free(hbuf);
        if (rc != 0) {
            fclose(f);
            return fail(err, errlen, "%s: %s", path, msg);
        }
    }
    if (fsize - off != out->nbytes) {
        fclose(f);
        return fail(err, errlen, "%s: header describes %zu data bytes but the file has %zu", path,
                    out->nbytes, fsize - off);
    }
    if (fseek(f, (long)off, SEEK_SET) != 0) {
        fclose(f);
        return fail(err, errlen, "%s: seek error", path);
    }
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data) {
        fclose(f);
        return fail(err, errlen, "%s: out of memory for %zu bytes", path, out->nbytes);
    }
    if (read_all(f, out->data, out->nbytes) != 0) {
        fclose(f);
        npy_free(out);
        return fail(err, errlen, "%s: read error", path);
    }
    fclose(f);
    if (!host_is_little_endian())
        swap_bytes(out->data, out->count, npy_dtype_size(out->dtype));
    return 0;
}

/* ----------------------------------------------------------------- writer */

int npy_write_file(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, char *err, size_t errlen) {
    if (!path || ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && !shape))
        return fail(err, errlen, "npy: bad arguments for %s", path ? path : "(null)");
    size_t esize = npy_dtype_size(dtype);
    if (esize == 0)
        return fail(err, errlen, "npy: unknown dtype");
    size_t count = 1;
    char dims[NPY_MAX_DIMS * 22 + 4];
    size_t dl = 0;
    dims[dl++] = '(';
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] != 0 && count > SIZE_MAX / esize / (uint64_t)shape[i]))
            return fail(err, errlen, "npy: bad shape for %s", path);
        count *= (size_t)shape[i];
        dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%s%lld", i ? ", " : "",
                               (long long)shape[i]);
    }
    if (ndim == 1)
        dims[dl++] = ',';
    dims[dl++] = ')';
    dims[dl] = '\0';
    if (count && !data)
        return fail(err, errlen, "npy: no data for %s", path);

    char header[512];
    int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     npy_dtype_descr(dtype), dims);
    if (n < 0 || (size_t)n + 64 > sizeof header)
        return fail(err, errlen, "npy: header too long");
    /* Pad with spaces so the data starts on a 64-byte boundary; end with '\n'. */
    size_t hl = (size_t)n, prefix = 10;
    size_t total = prefix + hl + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(header + hl, ' ', pad);
    hl += pad;
    header[hl++] = '\n';

    FILE *f = fopen(path, "wb");
    if (!f)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    uint8_t pre[10];
    memcpy(pre, npy_magic, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (uint8_t)(hl & 0xff);
    pre[9] = (uint8_t)(hl >> 8);
    int ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(header, 1, hl, f) == hl;
    if (ok && host_is_little_endian()) {
        ok = fwrite(data, esize, count, f) == count;
    } else if (ok) {
        uint8_t chunk[4096];
        const uint8_t *src = data;
        size_t per = sizeof chunk / esize;
        for (size_t i = 0; ok && i < count; i += per) {
            size_t m = count - i < per ? count - i : per;
            memcpy(chunk, src + i * esize, m * esize);
            swap_bytes(chunk, m, esize);
            ok = fwrite(chunk, esize, m, f) == m;
        }
    }
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        return fail(err, errlen, "%s: write error", path);
    return 0;
}

void npy_free(npy_array *a) {
    if (a) {
        free(a->data);
        a->data = NULL;
    }
}

int npy_fuzz_one(const uint8_t *data, size_t size) {
    npy_array a;
    char err[256];
    if (npy_parse_buffer(data, size, &a, err, sizeof err) == 0)
        npy_free(&a);
    return 0;
}

#ifdef STEM_NPY_LIBFUZZER
/* clang -fsanitize=fuzzer,address -DSTEM_NPY_LIBFUZZER tools/stem/npy.c */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return npy_fuzz_one(data, size);
}
#endif
