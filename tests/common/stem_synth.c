/* Deterministic test and demo inputs.
 *
 * "Deterministic on every platform" means the same bytes everywhere, so no
 * libm transcendental is used: log and sin/cos are short polynomials built
 * from IEEE +, -, *, / (correctly rounded everywhere) plus frexp, floor and
 * sqrt (exact or correctly rounded). FMA contraction would change roundings,
 * hence the pragmas. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-math-errno") /* errno only blocks vectorizing sqrt */
#endif

#include "stem_synth.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ------------------------------------------------------------------ PRNG */

void stem_rng_seed(stem_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t stem_rng_next(stem_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double stem_rng_uniform(stem_rng *rng) { return (double)(stem_rng_next(rng) >> 11) * 0x1.0p-53; }

/* ln(x) for x in (0, 1] (normal doubles): x = m 2^e with m in [sqrt(1/2),
 * sqrt(2)), then ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172; 9 odd
 * terms reach ~1e-14, far below float output precision. Branch-free so the
 * batch loops below vectorize. */
static inline double det_log(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1022;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FE0000000000000ull; /* [0.5, 1) */
    double m;
    memcpy(&m, &bits, sizeof m);
    const int lo = m < 0.70710678118654752440;
    m = lo ? m + m : m;
    e -= lo;
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return (double)e * 0.69314718055994530942 + 2.0 * s * p;
}

/* sin and cos of 2*pi*u for u in [0, 1): reduce to a quarter turn q plus
 * x in [-pi/4, pi/4], Taylor to x^15 / x^14 (error < 1e-12), rotate by q. */
static inline void det_sincos_unit(double u, double *sn, double *cs)
{
    const double t = 4.0 * u;           /* [0, 4) */
    const int quad = (int)(t + 0.5);     /* truncation = floor here */
    const double x = (t - (double)quad) * 1.57079632679489661923;
    const double x2 = x * x;
    double sp = -1.0 / 1307674368000.0; /* -1/15! */
    sp = sp * x2 + 1.0 / 6227020800.0;
    sp = sp * x2 - 1.0 / 39916800.0;
    sp = sp * x2 + 1.0 / 362880.0;
    sp = sp * x2 - 1.0 / 5040.0;
    sp = sp * x2 + 1.0 / 120.0;
    sp = sp * x2 - 1.0 / 6.0;
    sp = sp * x2 + 1.0;
    double cp = -1.0 / 87178291200.0; /* -1/14! */
    cp = cp * x2 + 1.0 / 479001600.0;
    cp = cp * x2 - 1.0 / 3628800.0;
    cp = cp * x2 + 1.0 / 40320.0;
    cp = cp * x2 - 1.0 / 720.0;
    cp = cp * x2 + 1.0 / 24.0;
    cp = cp * x2 - 1.0 / 2.0;
    cp = cp * x2 + 1.0;
    const double s = x * sp, c = cp;
    const double a = (quad & 1) ? c : s, b = (quad & 1) ? s : c; /* rotate by 90 deg */
    *sn = (quad == 0 || quad == 1 || quad == 4) ? a : -a;
    *cs = (quad == 0 || quad == 3 || quad == 4) ? b : -b;
}

/* Any number of turns (positions times frequencies). */
static void det_sincos_turns(double turns, double *sn, double *cs)
{
    det_sincos_unit(turns - floor(turns), sn, cs);
}

/* Box-Muller: both outputs of one pair of uniforms. */
static void normal_pair(stem_rng *rng, double *z0, double *z1)
{
    const double u1 = (double)((stem_rng_next(rng) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    const double u2 = stem_rng_uniform(rng);
    const double r = sqrt(-2.0 * det_log(u1));
    double s, c;
    det_sincos_unit(u2, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

double stem_rng_normal(stem_rng *rng)
{
    double z0, z1;
    normal_pair(rng, &z0, &z1);
    return z0;
}

/* Fills n floats with sigma * N(0, 1) from the same pairs normal_pair makes,
 * computed in batches (draws first, then the math) so the math vectorizes. */
#define NBATCH 64
static void fill_normal(stem_rng *rng, float *x, int64_t n, double sigma)
{
    double u1[NBATCH], u2[NBATCH], r[NBATCH], sn[NBATCH], cs[NBATCH];
    int64_t i = 0;
    while (i + 1 < n) {
        int m = (int)((n - i) / 2 < NBATCH ? (n - i) / 2 : NBATCH);
        for (int j = 0; j < m; ++j) {
            u1[j] = (double)((stem_rng_next(rng) >> 11) + 1) * 0x1.0p-53;
            u2[j] = stem_rng_uniform(rng);
        }
        for (int j = 0; j < m; ++j)
            r[j] = sigma * sqrt(-2.0 * det_log(u1[j]));
        for (int j = 0; j < m; ++j)
            det_sincos_unit(u2[j], &sn[j], &cs[j]);
        for (int j = 0; j < m; ++j) {
            x[i + 2 * j] = (float)(r[j] * cs[j]);
            x[i + 2 * j + 1] = (float)(r[j] * sn[j]);
        }
        i += 2 * (int64_t)m;
    }
    if (i < n)
        x[i] = (float)(sigma * stem_rng_normal(rng));
}

/* An independent stream per (tensor, batch, head) so shapes don't shift each other. */
static void stream(stem_rng *rng, uint64_t seed, uint64_t tag, int64_t b, int64_t h)
{
    stem_rng_seed(rng, seed ^ (tag * 0xD1B54A32D192ED03ull));
    uint64_t s = stem_rng_next(rng) ^ ((uint64_t)b * 0x8CB92BA72F3D8DD7ull);
    stem_rng_seed(rng, s);
    s = stem_rng_next(rng) ^ ((uint64_t)h * 0xA24BAED4963EE407ull);
    stem_rng_seed(rng, s);
    (void)stem_rng_next(rng);
}

/* ------------------------------------------------------------ structured */

/* Feature layout over the head dimension (d >= 16): pairs of dims carry
 * rotary-style position codes, a few dims carry sink / stripe directions,
 * the rest is noise. For d < 16 the structured parts are left out. */
#ifndef PEAK_LOCAL
/* Peak scaled logit each pattern reaches at weight 1: trained heads put most
 * of their mass on sinks, the local band and a few stripes, so these sit far
 * above the O(0.5) noise logits of thousands of other keys. */
#define PEAK_LOCAL 7.0
#define PEAK_SLASH 7.0
#define PEAK_SINK 11.0
#define PEAK_STRIPE 8.0
#endif
#define MAX_FREQ 8
#define MAX_MARK 64

typedef struct kv_profile {
    int nf_local, nf_slash, n_dir;  /* pairs / pairs / dims per direction */
    int off_local, off_slash, off_sink, off_stripe;
    double nu_local[MAX_FREQ], nu_slash[MAX_FREQ]; /* turns per token */
    double a_local, a_slash, a_sink_q, a_sink_k, a_stripe_q, a_stripe_k;
    int64_t n_sink;                   /* tokens [0, n_sink) are sinks */
    int n_stripe;
    int64_t stripe[MAX_MARK];         /* strongly attended key positions */
    double dir_sink[32], dir_stripe[32];
} kv_profile;

static int64_t i64min(int64_t a, int64_t b) { return a < b ? a : b; }

static void make_profile(kv_profile *p, stem_rng *rng, int64_t n_tokens, int64_t d)
{
    const double rd = sqrt((double)d); /* scale * q.k = q.k / sqrt(d) */
    p->nf_local = p->nf_slash = (int)(d >= 128 ? 4 : d >= 64 ? 2 : d >= 16 ? 1 : 0);
    p->n_dir = (int)(d >= 128 ? 4 : d >= 64 ? 2 : d >= 16 ? 1 : 0);
    p->off_local = 0;
    p->off_slash = 2 * p->nf_local;
    p->off_sink = p->off_slash + 2 * p->nf_slash;
    p->off_stripe = p->off_sink + p->n_dir;
    /* Local band: periods from ~8 to ~512 tokens, so neighbouring blocks
     * score higher than distant ones. Slash: short periods (8..64 tokens)
     * make a sharp peak at one query-key offset. */
    const double pmax = 128.0 * (1.0 + 3.0 * stem_rng_uniform(rng));
    for (int f = 0; f < p->nf_local; ++f) {
        double period = pmax / (1.0 + 15.0 * ((double)f + stem_rng_uniform(rng)) /
                                          (double)(p->nf_local > 1 ? p->nf_local : 1));
        p->nu_local[f] = 1.0 / period;
    }
    for (int f = 0; f < p->nf_slash; ++f)
        p->nu_slash[f] = 1.0 / (8.0 + 56.0 * stem_rng_uniform(rng));
    /* Amplitudes from the peak scaled logit each pattern should reach. */
    p->a_local = p->nf_local ? sqrt(PEAK_LOCAL * rd / (double)p->nf_local) : 0.0;
    p->a_slash = p->nf_slash ? sqrt(PEAK_SLASH * rd / (double)p->nf_slash) : 0.0;
    p->a_sink_q = 3.0;
    p->a_sink_k = PEAK_SINK * rd / 3.0;
    p->a_stripe_q = 2.5;
    p->a_stripe_k = PEAK_STRIPE * rd / 2.5;
    for (int i = 0; i < p->n_dir; ++i) {
        p->dir_sink[i] = (stem_rng_next(rng) & 1 ? 1.0 : -1.0) / sqrt((double)p->n_dir);
        p->dir_stripe[i] = (stem_rng_next(rng) & 1 ? 1.0 : -1.0) / sqrt((double)p->n_dir);
    }
    p->n_sink = i64min(1 + (int64_t)(stem_rng_next(rng) % 4), n_tokens);
    p->n_stripe = 2 + (int)(stem_rng_next(rng) % 6);
    for (int s = 0; s < p->n_stripe; ++s)
        p->stripe[s] = (int64_t)(stem_rng_uniform(rng) * (double)n_tokens);
}

static int is_stripe(const kv_profile *p, int64_t t)
{
    for (int s = 0; s < p->n_stripe; ++s)
        if (p->stripe[s] == t)
            return 1;
    return 0;
}

/* Per query head emphasis: one pattern strong, the others weaker. */
typedef struct q_profile {
    double w_local, w_slash, w_sink, w_stripe;
    int64_t slash_offset; /* tokens behind the query */
} q_profile;

static void make_q_profile(q_profile *qp, stem_rng *rng, int64_t h)
{
    double w[4];
    for (int i = 0; i < 4; ++i)
        w[i] = 0.1 + 0.5 * stem_rng_uniform(rng);
    w[h % 4] = 1.0 + 0.5 * stem_rng_uniform(rng);
    qp->w_local = w[0];
    qp->w_slash = w[1];
    qp->w_sink = w[2];
    qp->w_stripe = w[3];
    qp->slash_offset = 1 + (int64_t)(stem_rng_next(rng) % 512);
}

static void synth_k_rows(const kv_profile *p, stem_rng *rng, int64_t n_tokens, int64_t d, float *k)
{
    fill_normal(rng, k, n_tokens * d, 0.7);
    for (int64_t t = 0; t < n_tokens; ++t) {
        float *row = k + t * d;
        for (int f = 0; f < p->nf_local; ++f) {
            double s, c;
            det_sincos_turns(p->nu_local[f] * (double)t, &s, &c);
            row[p->off_local + 2 * f] += (float)(p->a_local * c);
            row[p->off_local + 2 * f + 1] += (float)(p->a_local * s);
        }
        for (int f = 0; f < p->nf_slash; ++f) {
            double s, c;
            det_sincos_turns(p->nu_slash[f] * (double)t, &s, &c);
            row[p->off_slash + 2 * f] += (float)(p->a_slash * c);
            row[p->off_slash + 2 * f + 1] += (float)(p->a_slash * s);
        }
        if (t < p->n_sink)
            for (int i = 0; i < p->n_dir; ++i)
                row[p->off_sink + i] += (float)(p->a_sink_k * p->dir_sink[i]);
        if (is_stripe(p, t))
            for (int i = 0; i < p->n_dir; ++i)
                row[p->off_stripe + i] += (float)(p->a_stripe_k * p->dir_stripe[i]);
    }
}

static void synth_q_rows(const kv_profile *p, const q_profile *qp, stem_rng *rng,
                         int64_t n_tokens, int64_t d, float *q)
{
    fill_normal(rng, q, n_tokens * d, 0.7);
    for (int64_t t = 0; t < n_tokens; ++t) {
        float *row = q + t * d;
        for (int f = 0; f < p->nf_local; ++f) {
            double s, c;
            det_sincos_turns(p->nu_local[f] * (double)t, &s, &c);
            row[p->off_local + 2 * f] += (float)(qp->w_local * p->a_local * c);
            row[p->off_local + 2 * f + 1] += (float)(qp->w_local * p->a_local * s);
        }
        for (int f = 0; f < p->nf_slash; ++f) {
            double s, c;
            det_sincos_turns(p->nu_slash[f] * (double)(t - qp->slash_offset), &s, &c);
            row[p->off_slash + 2 * f] += (float)(qp->w_slash * p->a_slash * c);
            row[p->off_slash + 2 * f + 1] += (float)(qp->w_slash * p->a_slash * s);
        }
        for (int i = 0; i < p->n_dir; ++i) {
            row[p->off_sink + i] += (float)(qp->w_sink * p->a_sink_q * p->dir_sink[i]);
            row[p->off_stripe + i] += (float)(qp->w_stripe * p->a_stripe_q * p->dir_stripe[i]);
        }
    }
}

/* V: N(0,1) rows; sinks get small values (as in trained models), stripes and
 * ~1.5% of other tokens get 3-6x norms so the value bonus has something to find. */
static void synth_v_rows(const kv_profile *p, stem_rng *rng, int64_t n_tokens, int64_t d, float *v)
{
    fill_normal(rng, v, n_tokens * d, 1.0);
    for (int64_t t = 0; t < n_tokens; ++t) {
        const uint64_t r = stem_rng_next(rng);
        double gain = 1.0;
        if (t < p->n_sink)
            gain = 0.3;
        else if (is_stripe(p, t) || (r & 63) == 0)
            gain = 3.0 + 3.0 * (double)(r >> 40) * 0x1.0p-24;
        if (gain != 1.0)
            for (int64_t i = 0; i < d; ++i)
                v[t * d + i] = (float)(gain * (double)v[t * d + i]);
    }
}

void stem_synth_qkv(stem_synth_kind kind, uint64_t seed, int64_t batch, int64_t hq, int64_t hkv,
                    int64_t n_tokens, int64_t head_dim, float *q, float *k, float *v)
{
    if (batch <= 0 || hq <= 0 || hkv <= 0 || n_tokens <= 0 || head_dim <= 0)
        return;
    const int64_t nd = n_tokens * head_dim;
    stem_rng rng;
    if (kind != STEM_SYNTH_STRUCTURED) {
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t h = 0; h < hq; ++h) {
                stream(&rng, seed, 1, b, h);
                fill_normal(&rng, q + (b * hq + h) * nd, nd, 1.0);
            }
            for (int64_t h = 0; h < hkv; ++h) {
                stream(&rng, seed, 2, b, h);
                fill_normal(&rng, k + (b * hkv + h) * nd, nd, 1.0);
                stream(&rng, seed, 3, b, h);
                fill_normal(&rng, v + (b * hkv + h) * nd, nd, 1.0);
            }
        }
        return;
    }
    const int64_t g = hq % hkv == 0 ? hq / hkv : 1;
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t kh = 0; kh < hkv; ++kh) {
            kv_profile prof;
            stream(&rng, seed, 4, b, kh);
            make_profile(&prof, &rng, n_tokens, head_dim);
            stream(&rng, seed, 2, b, kh);
            synth_k_rows(&prof, &rng, n_tokens, head_dim, k + (b * hkv + kh) * nd);
            stream(&rng, seed, 3, b, kh);
            synth_v_rows(&prof, &rng, n_tokens, head_dim, v + (b * hkv + kh) * nd);
            for (int64_t j = 0; j < g; ++j) {
                const int64_t h = kh * g + j;
                if (h >= hq)
                    break;
                q_profile qp;
                stream(&rng, seed, 5, b, h);
                make_q_profile(&qp, &rng, h);
                stream(&rng, seed, 1, b, h);
                synth_q_rows(&prof, &qp, &rng, n_tokens, head_dim, q + (b * hq + h) * nd);
            }
        }
        /* Heads a non-divisible hq/hkv leaves out still get defined values. */
        for (int64_t h = hkv * g; h < hq; ++h) {
            stream(&rng, seed, 1, b, h);
            fill_normal(&rng, q + (b * hq + h) * nd, nd, 1.0);
        }
    }
}
