/*
 * The CPU kernels' softmax pieces (exp2_sum, exp2_sum_bf16, exp2_sum_bf16_max,
 * row_max) on every
 * kernel table this CPU runs (scalar, AVX2, AVX-512 with and without
 * AVX512_BF16, AMX), against double precision: relative error of 2^t within
 * EXP2_REL (plus the argument's f32 rounding) for t >= -124.5, exactly 0
 * below -126.5 and for -inf, NaN kept, the sum of the values, the scale
 * folded into exp2_sum_bf16's argument, and its bf16 outputs within half a
 * bf16 step of the exact value. Odd lengths reach the scalar tails. Links
 * the static library for the internal tables.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

/* exp2_sum's contract, "a few ulp", for the polynomial and its f32
 * evaluation (the AVX-512 degree-5 polynomial: 1.6e-7; the others below
 * 1e-7). */
#define EXP2_REL 4e-7

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            if (failures <= 20) {                                                                  \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static uint32_t rng = 12345u;
static float uniform(float lo, float hi)
{
    rng = rng * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)((rng >> 8) * (1.0 / 16777216.0));
}

static float bf16_value(uint16_t b)
{
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Arguments of one row: mostly the softmax range [-40, 0], some near the
 * flush threshold, -inf (masked keys), and the row max itself. */
static void fill_row(float *x, int n, float sub, float mul)
{
    for (int j = 0; j < n; j++) {
        const int kind = j % 11;
        float t = kind == 3 ? uniform(-130.0f, -120.0f) : uniform(-40.0f, 0.0f);
        x[j] = (t + sub) / mul;
        if (kind == 7)
            x[j] = -INFINITY;
    }
    x[n / 2] = sub / mul;
}

/* The exact 2^(mul x - sub) of one entry, whether the kernel must give 0,
 * and its tolerance: the polynomial's EXP2_REL plus what rounding the f32
 * argument can move (half an ulp of each of |mul x| and |t|, times ln 2),
 * which the kernels may do once (fused) or twice (scaled, then subtracted). */
static double exact(float x, float mul, float sub, int *zero, double *tol)
{
    const double p = (double)x * mul, t = p - sub;
    *zero = t < -126.5;
    const double e = *zero ? 0.0 : exp2(t);
    *tol = *zero ? 0.0 : e * (EXP2_REL + 0.7 * ldexp(1.0, -24) * (fabs(p) + fabs(t)));
    return e;
}

/* The exact sum of 2^(mul x - sub) over a row, and its tolerance: each
 * entry's plus the f32 additions'. */
static double exact_sum(const float *x, int n, float mul, float sub, double *sum_tol)
{
    double ref = 0.0, tol_all = 0.0;
    for (int j = 0; j < n; j++) {
        int zero;
        double tol;
        ref += exact(x[j], mul, sub, &zero, &tol);
        tol_all += tol;
    }
    *sum_tol = tol_all + n * ldexp(1.0, -24) * ref;
    return ref;
}

static void check_table(const stem_cpu_kernels *k)
{
    enum { MAXN = 301 };
    float x[MAXN], y[MAXN];
    uint16_t dst[MAXN + 1];
    const int lens[] = {1, 7, 16, 31, 32, 33, 64, 128, 255, 301};
    const float muls[] = {1.0f, 0.12751743f, 0.25502f};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (size_t mi = 0; mi < sizeof muls / sizeof muls[0]; mi++) {
            const int n = lens[li];
            const float mul = muls[mi], sub = uniform(-5.0f, 20.0f);
            fill_row(x, n, sub, mul);
            /* row_max: the largest entry (-inf entries never win) */
            float want = -INFINITY;
            for (int j = 0; j < n; j++)
                want = x[j] > want ? x[j] : want;
            CHECK(k->row_max(x, n) == want, "%s row_max n %d", k->name, n);

            /* exp2_sum on the scaled row */
            for (int j = 0; j < n; j++)
                y[j] = x[j] * mul;
            double sum_tol;
            const double ref_sum = exact_sum(x, n, mul, sub, &sum_tol);
            float got[MAXN];
            memcpy(got, y, sizeof(float) * (size_t)n);
            const float s = k->exp2_sum(got, n, sub);
            CHECK(fabs(s - ref_sum) <= sum_tol, "%s exp2_sum sum n %d: %.9g vs %.9g",
                  k->name, n, (double)s, ref_sum);
            for (int j = 0; j < n; j++) {
                int zero;
                double tol;
                const double e = exact(x[j], mul, sub, &zero, &tol);
                const double t = (double)x[j] * mul - sub;
                if (zero)
                    CHECK(got[j] == 0.0f, "%s exp2_sum: 2^%.3f gave %g, not 0", k->name, t,
                          (double)got[j]);
                else if (t >= -124.5)
                    CHECK(fabs(got[j] - e) <= tol, "%s exp2_sum: 2^%.6f = %.9g, want %.9g",
                          k->name, t, (double)got[j], e);
                else /* near the flush threshold (-126 or -125): 0 or close */
                    CHECK(got[j] == 0.0f || fabs(got[j] - e) <= tol, "%s exp2_sum near flush",
                          k->name);
            }

            /* exp2_sum_bf16 with the scale folded in */
            memcpy(y, x, sizeof(float) * (size_t)n);
            dst[n] = 0xbeef;
            const float sb = k->exp2_sum_bf16(y, n, mul, sub, dst);
            CHECK(dst[n] == 0xbeef, "%s exp2_sum_bf16 wrote past n", k->name);
            CHECK(fabs(sb - ref_sum) <= sum_tol,
                  "%s exp2_sum_bf16 sum n %d mul %g: %.9g vs %.9g", k->name, n, (double)mul,
                  (double)sb, ref_sum);
            for (int j = 0; j < n; j++) {
                int zero;
                double tol;
                const double e = exact(x[j], mul, sub, &zero, &tol);
                const double v = bf16_value(dst[j]);
                if (zero)
                    CHECK(dst[j] == 0, "%s exp2_sum_bf16: flushed entry gave %g", k->name, v);
                else if ((double)x[j] * mul - sub >= -124.5) /* bf16: half a step, 2^-8 relative */
                    CHECK(fabs(v - e) <= e / 256.0 + tol,
                          "%s exp2_sum_bf16: %.9g for %.9g", k->name, v, e);
            }
            /* exp2_sum_bf16_max: the same values and sum, x untouched, the
             * row's max; and against a sub up to 8 below mul * max (the lazy
             * rescaling's arguments reach +8) */
            if (k->exp2_sum_bf16_max) {
                uint16_t dst2[MAXN + 1];
                float xmax, x2[MAXN];
                memcpy(x2, x, sizeof(float) * (size_t)n);
                const float sm = k->exp2_sum_bf16_max(x2, n, mul, sub, dst2, &xmax);
                CHECK(sm == sb && memcmp(dst, dst2, sizeof(uint16_t) * (size_t)n) == 0,
                      "%s exp2_sum_bf16_max differs from exp2_sum_bf16", k->name);
                CHECK(memcmp(x, x2, sizeof(float) * (size_t)n) == 0, "%s exp2_sum_bf16_max wrote x",
                      k->name);
                CHECK(xmax == want, "%s exp2_sum_bf16_max max %g, want %g", k->name, (double)xmax,
                      (double)want);
                const float lower = sub - 7.5f; /* arguments up to +7.5 */
                double tol_sum;
                const double ref = exact_sum(x, n, mul, lower, &tol_sum);
                const float sl = k->exp2_sum_bf16_max(x, n, mul, lower, dst2, &xmax);
                CHECK(fabs(sl - ref) <= tol_sum, "%s exp2_sum_bf16_max above the max: %.9g vs %.9g",
                      k->name, (double)sl, ref);
                for (int j = 0; j < n; j++) {
                    int zero;
                    double tol;
                    const double e = exact(x[j], mul, lower, &zero, &tol);
                    if (!zero && (double)x[j] * mul - lower >= -124.5)
                        CHECK(fabs(bf16_value(dst2[j]) - e) <= e / 256.0 + tol,
                              "%s exp2_sum_bf16_max above the max: %g for %g", k->name,
                              (double)bf16_value(dst2[j]), e);
                }
            }
        }
    /* NaN stays NaN (a NaN query's row must come out NaN) */
    for (int j = 0; j < 40; j++)
        x[j] = -1.0f;
    x[17] = NAN;
    memcpy(y, x, sizeof(float) * 40);
    CHECK(isnan(k->exp2_sum(y, 40, 0.0f)) && isnan(y[17]), "%s exp2_sum lost a NaN", k->name);
    memcpy(y, x, sizeof(float) * 40);
    CHECK(isnan(k->exp2_sum_bf16(y, 40, 0.5f, 0.0f, dst)) && (dst[17] & 0x7fff) > 0x7f80,
          "%s exp2_sum_bf16 lost a NaN", k->name);
}

int main(void)
{
    const stem_cpu_isa top = stem_cpu_isa_detect();
    int tables = 0;
    for (int isa = STEM_CPU_ISA_SCALAR; isa <= (int)top; isa++) {
        stem_cpu_isa used;
        const stem_cpu_kernels *k = stem_cpu_kernels_for((stem_cpu_isa)isa, &used);
        if ((int)used != isa)
            continue; /* not built for this ISA */
        check_table(k);
        printf("%-12s checked\n", k->name);
        tables++;
    }
    if (failures)
        printf("%d failures\n", failures);
    return failures || tables == 0;
}
