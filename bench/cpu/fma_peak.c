/*
 * FMA and AMX peak probe: the fp32 FMA throughput this CPU sustains, the
 * ceiling the CPU backend's f32 GFLOP/s are compared with, and the bf16 tile
 * throughput (AMX TDPBF16PS), the ceiling of its bf16 path. Every thread
 * runs chains of independent vector FMAs (enough to cover latency x ports)
 * on registers only; GFLOP/s = 2 * lanes * FMAs / seconds. Reported for AVX2
 * (8 lanes) and, where the CPU has them, AVX-512 (16 lanes) and AMX-BF16
 * (four independent 16 x 16 f32 tiles, each TDPBF16PS 16 * 16 * 32 * 2
 * flops, operands in tiles), on one thread and on all.
 *
 * Build: cc -O2 -fopenmp fma_peak.c -o fma_peak   (no -march: each probe
 * carries its own target attribute and runs only if CPUID says so)
 * Usage: fma_peak [seconds per measurement, default 1]
 */
#define _GNU_SOURCE /* syscall() */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
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

__attribute__((target("amx-tile,amx-bf16"))) static float run_amx(long iters)
{
    uint8_t cfg[64] = {0}; /* palette 1, tiles 0-7 of 16 rows x 64 bytes */
    cfg[0] = 1;
    for (int t = 0; t < 8; t++) {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = 16;
    }
    uint16_t src[16 * 32];
    for (int i = 0; i < 16 * 32; i++)
        src[i] = 0x3c00 + (uint16_t)(i & 7); /* small bf16 values near 2^-7 */
    float out[16 * 16];
    _tile_loadconfig(cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, src, 64);
    _tile_loadd(5, src, 64);
    _tile_loadd(6, src, 64);
    _tile_loadd(7, src, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}

/* GFLOP/s of `threads` threads each running `iters` iterations; kind 0
 * AVX2, 1 AVX-512, 2 AMX-BF16. */
static double measure(int kind, int threads, long iters, volatile float *sink)
{
    double t0 = 0.0, t1 = 0.0;
#pragma omp parallel num_threads(threads)
    {
#pragma omp barrier
#pragma omp master
        t0 = now();
        const float s = kind == 2 ? run_amx(iters) : kind ? run_avx512(iters) : run_avx2(iters);
#pragma omp atomic
        *sink += s;
#pragma omp barrier
#pragma omp master
        t1 = now();
    }
    if (kind == 2)
        return (double)threads * (double)iters * 4.0 * 16 * 16 * 32 * 2 / (t1 - t0) * 1e-9;
    const double fmas = (double)threads * (double)iters * (kind ? 2 * CHAINS : CHAINS);
    return 2.0 * (kind ? 16 : 8) * fmas / (t1 - t0) * 1e-9;
}

/* Best of three runs of about `seconds` each. */
static double probe(int kind, int threads, double seconds)
{
    volatile float sink = 0.0f;
    long iters = 1 << 16;
    while (1) { /* calibrate on this thread count */
        const double t0 = now();
        measure(kind, threads, iters, &sink);
        const double dt = now() - t0;
        if (dt > 0.05) {
            iters = (long)((double)iters * seconds / dt);
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int r = 0; r < 3; r++) {
        const double g = measure(kind, threads, iters, &sink);
        best = g > best ? g : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    __builtin_cpu_init();
    const int all = omp_get_max_threads();
    printf("# fma_peak: fp32 FMA and bf16 AMX GFLOP/s, best of 3 x %.1f s, threads 1 and %d\n",
           seconds, all);
    printf("isa\tthreads\tGFLOP/s\tper_thread\n");
    static const char *const names[3] = {"avx2", "avx512", "amx-bf16"};
    for (int isa = 0; isa < 3; isa++) {
        int ok = isa == 2   ? __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16")
                 : isa == 1 ? __builtin_cpu_supports("avx512f")
                            : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        /* Linux grants the tile data state only on request (0x1023 =
         * ARCH_REQ_XCOMP_PERM, 18 = XFEATURE_XTILEDATA). */
        if (ok && isa == 2 && syscall(SYS_arch_prctl, 0x1023, 18) != 0)
            ok = 0;
        if (!ok) {
            printf("%s\t-\tnot supported\t-\n", names[isa]);
            continue;
        }
        const int counts[2] = {1, all};
        for (int i = 0; i < (all > 1 ? 2 : 1); i++) {
            const double g = probe(isa, counts[i], seconds);
            printf("%s\t%d\t%.1f\t%.1f\n", names[isa], counts[i], g, g / counts[i]);
            fflush(stdout);
        }
    }
    return 0;
}
