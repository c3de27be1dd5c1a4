/* CPU backend: runtime ISA detection (CPUID + XGETBV, and for AMX the Linux
 * permission for the tile data state) and kernel dispatch. */
#define _GNU_SOURCE /* syscall() */
#include "cpu_kernels.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define STEM_CPU_X86 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define STEM_CPU_ARCH_REQ_XCOMP_PERM 0x1023 /* asm/prctl.h, Linux 5.16 */
#define STEM_CPU_XFEATURE_XTILEDATA 18
#endif

#ifdef STEM_CPU_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    /* Only reached when CPUID reports OSXSAVE, so the instruction exists. */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

stem_cpu_isa stem_cpu_isa_detect(void)
{
#ifdef STEM_CPU_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return STEM_CPU_ISA_SCALAR;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1,
              f16c = (c >> 29) & 1;
    if (!osxsave || !avx)
        return STEM_CPU_ISA_SCALAR;
    /* The OS must save the YMM (and for AVX-512 the opmask/ZMM) state, or
     * the instructions fault even though CPUID lists them. */
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6)
        return STEM_CPU_ISA_SCALAR;
    if (__get_cpuid_max(0, NULL) < 7)
        return STEM_CPU_ISA_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1;
    const int avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    if (!avx2 || !fma || !f16c) /* the AVX2 kernels use all three */
        return STEM_CPU_ISA_SCALAR;
    if (!(avx512f && avx512bw && avx512vl && (xcr0 & 0xE0) == 0xE0))
        return STEM_CPU_ISA_AVX2;
    /* AMX: the tile unit with bf16 (leaf 7 EDX bits 24, 22), AVX512_BF16 for
     * the edges (leaf 7.1 EAX bit 5), XTILECFG + XTILEDATA enabled by the OS
     * in XCR0 (bits 17, 18), and this process granted the tile data state:
     * Linux keeps it off until asked, and a tile instruction faults before. */
    const int amx_tile = (d >> 24) & 1, amx_bf16 = (d >> 22) & 1;
    int avx512_bf16 = 0;
    if (a >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        avx512_bf16 = (a1 >> 5) & 1;
    }
    if (amx_tile && amx_bf16 && avx512_bf16 && (xcr0 & 0x60000) == 0x60000) {
#ifdef STEM_CPU_ARCH_REQ_XCOMP_PERM
        /* Idempotent; granted once for the whole process. */
        if (syscall(SYS_arch_prctl, STEM_CPU_ARCH_REQ_XCOMP_PERM,
                    STEM_CPU_XFEATURE_XTILEDATA) == 0)
            return STEM_CPU_ISA_AMX;
#endif
    }
    return STEM_CPU_ISA_AVX512;
#else
    return STEM_CPU_ISA_SCALAR;
#endif
}

int stem_cpu_has_avx512_bf16(void)
{
#ifdef STEM_CPU_X86
    if (stem_cpu_isa_detect() < STEM_CPU_ISA_AVX512) /* also checks the OS state */
        return 0;
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    if (a < 1) /* no subleaf 1 */
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1;
#else
    return 0;
#endif
}

const char *stem_cpu_isa_name(stem_cpu_isa isa)
{
    switch (isa) {
    case STEM_CPU_ISA_SCALAR: return "scalar";
    case STEM_CPU_ISA_AVX2: return "avx2";
    case STEM_CPU_ISA_AVX512: return "avx512";
    case STEM_CPU_ISA_AMX: return "amx";
    default: return "unknown";
    }
}

static int name_equals(const char *s, const char *lower)
{
    for (; *s && *lower; s++, lower++)
        if (tolower((unsigned char)*s) != *lower)
            return 0;
    return *s == 0 && *lower == 0;
}

stem_cpu_isa stem_cpu_isa_cap(stem_cpu_isa isa)
{
    /* No cap by default: the best table the CPU has (AMX passed the CPU
     * suite on a Xeon with AMX, bench/results/cpu.md). STEM_CPU_MAX_ISA
     * caps it (scalar, avx2, avx512, amx); an unknown value is ignored. */
    stem_cpu_isa cap = STEM_CPU_ISA_AMX;
    const char *env = getenv("STEM_CPU_MAX_ISA");
    if (env && *env)
        for (int i = 0; i < STEM_CPU_ISA_COUNT; i++)
            if (name_equals(env, stem_cpu_isa_name((stem_cpu_isa)i)))
                cap = (stem_cpu_isa)i;
    return isa < cap ? isa : cap;
}

const stem_cpu_kernels *stem_cpu_kernels_for(stem_cpu_isa isa, stem_cpu_isa *used)
{
#ifdef STEM_CPU_SIMD_KERNELS
#ifdef STEM_CPU_AMX
    /* isa is at most what stem_cpu_isa_detect found, which asked for the
     * tile state when it reported AMX. */
    if (isa >= STEM_CPU_ISA_AMX) {
        if (used)
            *used = STEM_CPU_ISA_AMX;
        return &stem_cpu_kernels_amx;
    }
#endif
    if (isa >= STEM_CPU_ISA_AVX512) {
        if (used)
            *used = STEM_CPU_ISA_AVX512;
#ifdef STEM_CPU_AVX512_BF16
        if (stem_cpu_has_avx512_bf16())
            return &stem_cpu_kernels_avx512_bf16;
#endif
        return &stem_cpu_kernels_avx512;
    }
    if (isa >= STEM_CPU_ISA_AVX2) {
        if (used)
            *used = STEM_CPU_ISA_AVX2;
        return &stem_cpu_kernels_avx2;
    }
#else
    (void)isa; /* built without the ISA flags: scalar only */
#endif
    if (used)
        *used = STEM_CPU_ISA_SCALAR;
    return &stem_cpu_kernels_scalar;
}
