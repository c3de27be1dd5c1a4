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
#include <stdlib.h>
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

/* Per KV head, Q and K share a few features, so scale * q.k has the shape
 * of a trained model's attention (peaked, with little mass left on the
 * bulk of the keys):
 *   sinks    the first 1-8 keys carry a large component along a sign
 *            direction every query of the head shares (attention sinks);
 *   band     random Fourier features (RoPE-like rotations of a shared
 *            vector, Cauchy-distributed frequencies): q_i.k_j ~
 *            F exp(-|i-j| / W), a local band of width W = 16..512 tokens;
 *   stripes  3-8 runs of 8-32 keys carry a large component along a second
 *            shared direction (vertical lines), with high-norm V rows;
 *   slash    slash heads add the band features of token i - o to q_i: a
 *            diagonal at offset o (16..4096);
 *   noise    small i.i.d. parts, so block scores do not tie.
 * Each query head gets a type (sink / band / stripe / slash heavy) and
 * peak scaled logits per feature; key-side amplitudes are fixed, so the
 * logits do not move with d. Sinks and bands peak ~10-15 above the bulk:
 * at 16K keys a feature needs ~ln(16K) ~ 10 to hold most of the mass. */

#define K_SINK 3.0   /* per-dim key amplitudes: sink and stripe keys are outliers */
#define K_STRIPE 3.0
#define K_NOISE 0.3
#define Q_NOISE 0.5
#define MAX_STRIPE 8

enum { HEAD_SINK, HEAD_LOCAL, HEAD_STRIPE, HEAD_SLASH };

/* Cheap N(0,1)-like draws: the four 16-bit fields of one splitmix64 output
 * summed (Irwin-Hall, bounded at +-3.46, so f16 never overflows): exact
 * integer sums and one rounding give the same bytes everywhere, ~20x
 * faster than the Box-Muller path. IH_SCALE = sqrt(3 / (2^32 - 1)). */
#define IH_SCALE 0x1.bb67ae86627e8p-16
static inline double ih_normal(uint64_t r)
{
    const uint64_t s = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
    return ((double)s - 131070.0) * IH_SCALE;
}

static double uni(stem_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * stem_rng_uniform(rng);
}

typedef struct kv_profile {
    int64_t n_sink;
    int n_stripe;
    int64_t stripe[MAX_STRIPE], stripe_len[MAX_STRIPE];
    double stripe_gain[MAX_STRIPE];
    double width;      /* band width W in tokens */
    uint64_t dir_seed; /* sign directions */
    uint64_t frq_seed; /* band frequencies */
} kv_profile;

typedef struct q_profile {
    double a_sink, a_stripe, a_band, a_slash; /* per-dim amplitudes */
    int64_t offset;                          /* slash: keys near i - offset */
} q_profile;

static void make_profile(kv_profile *p, stem_rng *rng, int64_t n_tokens)
{
    p->n_sink = 1 + (int64_t)(stem_rng_next(rng) % 8);
    if (p->n_sink > n_tokens)
        p->n_sink = n_tokens;
    p->n_stripe = 3 + (int)(stem_rng_next(rng) % (MAX_STRIPE - 2));
    for (int s = 0; s < p->n_stripe; ++s) {
        p->stripe[s] = (int64_t)(stem_rng_uniform(rng) * (double)n_tokens);
        /* 8-32 keys: a run Stem's block-averaged routing can see (single keys
         * add only logit/128 to a block score) */
        p->stripe_len[s] = 8 + (int64_t)(stem_rng_next(rng) % 25);
        p->stripe_gain[s] = uni(rng, 0.6, 1.0);
    }
    p->width = 16.0 * (double)(1u << (stem_rng_next(rng) % 5)) * uni(rng, 1.0, 2.0);
    p->dir_seed = stem_rng_next(rng);
    p->frq_seed = stem_rng_next(rng);
}

static double stripe_gain(const kv_profile *p, int64_t t)
{
    double g = 0.0;
    for (int s = 0; s < p->n_stripe; ++s)
        if (t >= p->stripe[s] && t < p->stripe[s] + p->stripe_len[s])
            g += p->stripe_gain[s];
    return g > 1.5 ? 1.5 : g; /* overlapping runs: keep |k| bounded */
}

/* Sign vector (+-1 per dim, so u.u = d) number `which`: 0 sink, 1 stripe. */
static void direction(uint64_t seed, int which, int64_t d, double *u)
{
    stem_rng r;
    stem_rng_seed(&r, seed ^ ((uint64_t)(which + 1) * 0x9E3779B97F4A7C15ull));
    uint64_t bits = 0;
    for (int64_t i = 0; i < d; ++i) {
        if ((i & 63) == 0)
            bits = stem_rng_next(&r);
        u[i] = (bits >> (i & 63)) & 1 ? 1.0 : -1.0;
    }
}

/* Band features phi_t (written into `f`, the V slot used as scratch):
 * pairs (cos, sin)(2 pi nu_p t) for F = d/2 frequencies nu_p (turns per
 * token) drawn from a Cauchy law of scale 1/(2 pi W), so that
 * phi_i.phi_j = sum_p cos(2 pi nu_p (i-j)) ~ F exp(-|i-j|/W). Phases are
 * reduced to [0, 1) turns exactly, then det_sincos_unit. An odd last dim is 0. */
static void synth_band(const kv_profile *p, int64_t n_tokens, int64_t d, float *f)
{
    const int64_t np = d / 2;
    double nu[512];
    stem_rng r;
    stem_rng_seed(&r, p->frq_seed);
    for (int64_t j = 0; j < np && j < 512; ++j) {
        /* tan(pi (u - 1/2)) = sin/cos of 2 pi (u/2 + 3/4) */
        const double u = ((double)(stem_rng_next(&r) >> 11) + 0.5) * 0x1.0p-53;
        double x = 0.5 * u + 0.75, sn, cs;
        x = x >= 1.0 ? x - 1.0 : x;
        det_sincos_unit(x, &sn, &cs);
        nu[j] = sn / cs / (6.28318530717958647692 * p->width);
    }
    for (int64_t t = 0; t < n_tokens; ++t) {
        float *row = f + t * d;
        for (int64_t j = 0; j < np; ++j) {
            const double ph = nu[j < 512 ? j : j & 511] * (double)t;
            double sn, cs;
            det_sincos_unit(ph - floor(ph), &sn, &cs);
            row[2 * j] = (float)cs;
            row[2 * j + 1] = (float)sn;
        }
        if (d & 1)
            row[d - 1] = 0.0f;
    }
}

static void synth_k_rows(const kv_profile *p, stem_rng *rng, int64_t n_tokens, int64_t d,
                         const float *f, const double *us, const double *ut, float *k)
{
    for (int64_t t = 0; t < n_tokens; ++t) {
        float *row = k + t * d;
        const float *frow = f + t * d;
        const double sink = t < p->n_sink ? K_SINK : 0.0;
        const double stripe = K_STRIPE * stripe_gain(p, t);
        for (int64_t i = 0; i < d; ++i)
            row[i] = (float)((double)frow[i] + K_NOISE * ih_normal(stem_rng_next(rng)) +
                             sink * us[i] + stripe * ut[i]);
    }
}

/* Peak scaled logit of each feature, [lo, hi): the head type that favours
 * a feature gets the high range. Every head keeps a sink (trained heads
 * almost all do) and some band. */
static void make_q_profile(q_profile *qp, stem_rng *rng, int type, int64_t n_tokens, int64_t d)
{
    const double rd = sqrt((double)d), fp = (double)(d / 2 > 0 ? d / 2 : 1);
    const double p_sink = type == HEAD_SINK ? uni(rng, 12.0, 15.0) : uni(rng, 9.0, 12.0);
    const double p_band = type == HEAD_LOCAL ? uni(rng, 10.0, 13.0) : uni(rng, 4.0, 8.0);
    const double p_stripe = type == HEAD_STRIPE ? uni(rng, 10.0, 13.0) : uni(rng, 2.0, 6.0);
    const double p_slash = type == HEAD_SLASH ? uni(rng, 9.0, 12.0) : 0.0;
    qp->a_sink = p_sink / (K_SINK * rd);
    qp->a_stripe = p_stripe / (K_STRIPE * rd);
    qp->a_band = p_band * rd / fp;
    qp->a_slash = p_slash * rd / fp;
    /* Offsets 16..4096, log-uniform, at most half the sequence. */
    int64_t o = (int64_t)(uni(rng, 1.0, 2.0) * (double)(16u << (stem_rng_next(rng) % 8)));
    qp->offset = o < n_tokens / 2 ? o : n_tokens / 2;
}

static void synth_q_rows(const q_profile *qp, stem_rng *rng, int64_t n_tokens, int64_t d,
                         const float *f, const double *us, const double *ut, float *q)
{
    const int64_t o = qp->offset;
    for (int64_t t = 0; t < n_tokens; ++t) {
        float *row = q + t * d;
        const float *frow = f + t * d;
        const float *srow = t >= o && qp->a_slash != 0.0 ? f + (t - o) * d : NULL;
        for (int64_t i = 0; i < d; ++i) {
            double x = Q_NOISE * ih_normal(stem_rng_next(rng)) + qp->a_sink * us[i] +
                       qp->a_stripe * ut[i] + qp->a_band * (double)frow[i];
            if (srow)
                x += qp->a_slash * (double)srow[i];
            row[i] = (float)x;
        }
    }
}

/* V: rows of varied norm (0.6-1.4x); sinks small (as in trained models),
 * stripes and ~0.8% of other tokens 2.5-4x, so the value bonus has
 * something to find. Overwrites the band scratch. */
static void synth_v_rows(const kv_profile *p, stem_rng *rng, int64_t n_tokens, int64_t d, float *v)
{
    for (int64_t t = 0; t < n_tokens; ++t) {
        const uint64_t r = stem_rng_next(rng);
        const double u = (double)(r >> 40) * 0x1.0p-24;
        double gain = 0.6 + 0.8 * u;
        if (t < p->n_sink)
            gain = 0.2;
        else if (stripe_gain(p, t) > 0.0 || (r & 127) == 0)
            gain = 2.5 + 1.5 * u;
        for (int64_t i = 0; i < d; ++i)
            v[t * d + i] = (float)(gain * ih_normal(stem_rng_next(rng)));
    }
}

static void fill_ih(stem_rng *rng, float *x, int64_t n, double sigma)
{
    for (int64_t i = 0; i < n; ++i)
        x[i] = (float)(sigma * ih_normal(stem_rng_next(rng)));
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
    double *us = malloc(2 * (size_t)head_dim * sizeof *us);
    if (!us)
        return;
    double *ut = us + head_dim;
    for (int64_t b = 0; b < batch; ++b) {
        /* Consecutive query heads cycle through the four types. */
        stream(&rng, seed, 7, b, 0);
        const int64_t type0 = (int64_t)(stem_rng_next(&rng) & 3);
        for (int64_t kh = 0; kh < hkv; ++kh) {
            float *kb = k + (b * hkv + kh) * nd, *vb = v + (b * hkv + kh) * nd;
            kv_profile prof;
            stream(&rng, seed, 4, b, kh);
            make_profile(&prof, &rng, n_tokens);
            direction(prof.dir_seed, 0, head_dim, us);
            direction(prof.dir_seed, 1, head_dim, ut);
            synth_band(&prof, n_tokens, head_dim, vb);
            stream(&rng, seed, 2, b, kh);
            synth_k_rows(&prof, &rng, n_tokens, head_dim, vb, us, ut, kb);
            for (int64_t j = 0; j < g; ++j) {
                const int64_t h = kh * g + j;
                if (h >= hq)
                    break;
                q_profile qp;
                stream(&rng, seed, 5, b, h);
                make_q_profile(&qp, &rng, (int)((h + type0) & 3), n_tokens, head_dim);
                stream(&rng, seed, 1, b, h);
                synth_q_rows(&qp, &rng, n_tokens, head_dim, vb, us, ut, q + (b * hq + h) * nd);
            }
            stream(&rng, seed, 3, b, kh);
            synth_v_rows(&prof, &rng, n_tokens, head_dim, vb);
        }
        /* Heads a non-divisible hq/hkv leaves out still get defined values. */
        for (int64_t h = hkv * g; h < hq; ++h) {
            stream(&rng, seed, 1, b, h);
            fill_ih(&rng, q + (b * hq + h) * nd, nd, 1.0);
        }
    }
    free(us);
}
