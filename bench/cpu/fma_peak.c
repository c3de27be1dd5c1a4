/*
 * FMA peak probe: the fp32 FMA throughput this CPU sustains, the ceiling the
 * CPU backend's GFLOP/s are compared with. Every thread runs chains of
 * independent vector FMAs (enough to cover latency x ports) on registers
 * only; GFLOP/s = 2 * lanes * FMAs / seconds. Reported for AVX2 (8 lanes)
 * and, where the CPU has it, AVX-512 (16 lanes), on one thread and on all.
 *
 * Build: cc -O2 -fopenmp fma_peak.c -o fma_peak   (no -march: each probe
 * carries its own target attribute and runs only if CPUID says so)
 * Usage: fma_peak [seconds per measurement, default 1]
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12 /* independent accumulators per thread */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

__attribute__((target("avx2,fma"))) static float run_avx2(long iters)
{
    __m256 acc[CHAINS]; /* fully unrolled below, so they live in registers */
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 32
        for (int c = 0; c < CHAINS; c++)
            acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    float s = 0.0f, out[8];
    for (int c = 0; c < CHAINS; c++) {
        _mm256_storeu_ps(out, acc[c]);
        s += out[0];
    }
    return s;
}

__attribute__((target("avx512f"))) static float run_avx512(long iters)
{
    __m512 acc[2 * CHAINS];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < 2 * CHAINS; c++)
        acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 32
        for (int c = 0; c < 2 * CHAINS; c++)
            acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    float s = 0.0f, out[16];
    for (int c = 0; c < 2 * CHAINS; c++) {
        _mm512_storeu_ps(out, acc[c]);
        s += out[0];
    }
    return s;
}

/* GFLOP/s of `threads` threads each running `iters` iterations. */
static double measure(int avx512, int threads, long iters, volatile float *sink)
{
    double t0 = 0.0, t1 = 0.0;
#pragma omp parallel num_threads(threads)
    {
#pragma omp barrier
#pragma omp master
        t0 = now();
        const float s = avx512 ? run_avx512(iters) : run_avx2(iters);
#pragma omp atomic
        *sink += s;
#pragma omp barrier
#pragma omp master
        t1 = now();
    }
    const double fmas = (double)threads * (double)iters * (avx512 ? 2 * CHAINS : CHAINS);
    return 2.0 * (avx512 ? 16 : 8) * fmas / (t1 - t0) * 1e-9;
}

/* Best of three runs of about `seconds` each. */
static double probe(int avx512, int threads, double seconds)
{
    volatile float sink = 0.0f;
    long iters = 1 << 16;
    while (1) { /* calibrate on this thread count */
        const double t0 = now();
        measure(avx512, threads, iters, &sink);
        const double dt = now() - t0;
        if (dt > 0.05) {
            iters = (long)((double)iters * seconds / dt);
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int r = 0; r < 3; r++) {
        const double g = measure(avx512, threads, iters, &sink);
        best = g > best ? g : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    __builtin_cpu_init();
    const int all = omp_get_max_threads();
    printf("# fma_peak: fp32 FMA GFLOP/s, best of 3 x %.1f s, threads 1 and %d\n", seconds, all);
    printf("isa\tthreads\tGFLOP/s\tper_thread\n");
    for (int isa = 0; isa < 2; isa++) {
        const int ok = isa ? __builtin_cpu_supports("avx512f")
                           : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (!ok) {
            printf("%s\t-\tnot supported\t-\n", isa ? "avx512" : "avx2");
            continue;
        }
        const int counts[2] = {1, all};
        for (int i = 0; i < (all > 1 ? 2 : 1); i++) {
            const double g = probe(isa, counts[i], seconds);
            printf("%s\t%d\t%.1f\t%.1f\n", isa ? "avx512" : "avx2", counts[i], g, g / counts[i]);
            fflush(stdout);
        }
    }
    return 0;
}
