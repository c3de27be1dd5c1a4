/* test_conformance: the case table and the misuse checks on every device of
 * every backend compiled in, then one summary line per backend.
 *
 *   test_conformance [--summary PATH] [--deferred PATH] [--list] [--plan]
 *   --plan                        per device: "run <backend> #<i> <case>" for each
 *                                 table case it would run, "defer ..." for each
 *                                 it leaves to make test-full; runs nothing
 *   STEM_TEST_REQUIRE=cpu,opencl  backends that must have a device (else FAIL)
 *   STEM_TEST_FILTER=substring    run only cases whose name contains it
 *   STEM_TEST_LEVEL=full          a longer sweep (more cases, larger N; the
 *                                 emulated devices' and lower-ISA sweeps whole)
 *   STEM_TEST_LEVEL=asan          every misuse case, the cheap table cases and
 *                                 1 in 4 of the mid-cost ones (sanitizer builds)
 *   STEM_TEST_VERBOSE=1           per-case timing and worst error/tolerance
 *   STEM_TEST_ONLY=opencl,vulkan  run only these backends' devices
 *   STEM_TEST_EMULATED=all        every case on emulated devices too (see below)
 *
 * The default level is make test's: one run per backend within its 5-minute
 * ctest budget on a 2-core machine. There the emulated devices and the CPU
 * reruns on lower ISAs take a slice of the table (make_test_keeps); the
 * cases they leave out run under STEM_TEST_LEVEL=full (make test-full), and
 * --deferred PATH lists them by name.
 */
#if defined(__linux__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* setenv, execv */
#endif
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#if defined(__linux__)
#include <unistd.h>
#endif

#include "cases.h"
#include "fixture.h"
#include "harness.h"
#include "run.h"

typedef struct tally {
    long passed, failed, skipped;
} tally;

static void test_case(void **state)
{
    conf_test *T = *state;
    conf_run_case(T);
    T->status = CONF_PASSED;
}

static void test_misuse(void **state)
{
    conf_test *T = *state;
    T->m->fn(T, T->m);
    if (T->status != CONF_SKIPPED) /* a case may skip a device it does not apply to */
        T->status = CONF_PASSED;
}

static int setup(void **state)
{
    conf_test *T = *state;
    T->status = CONF_FAILED;
    return 0;
}

static int teardown(void **state)
{
    conf_test *T = *state;
    if (res_release(&T->res) != 0)
        T->status = CONF_FAILED; /* something outlived the test */
    return 0;
}

static int env_is(const char *name, const char *value)
{
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

/* STEM_TEST_REQUIRE: comma list of backend names; -1 on an unknown name. */
static int parse_required(int required[CONF_BACKENDS])
{
    memset(required, 0, sizeof(int) * CONF_BACKENDS);
    const char *s = getenv("STEM_TEST_REQUIRE");
    while (s && *s) {
        while (*s == ',' || isspace((unsigned char)*s))
            ++s;
        const char *e = s;
        while (*e && *e != ',' && !isspace((unsigned char)*e))
            ++e;
        if (e == s)
            break;
        int found = 0;
        for (int b = 0; b < CONF_BACKENDS; ++b) {
            const char *name = stem_backend_name((stem_backend)b);
            if (strlen(name) == (size_t)(e - s) && strncmp(name, s, (size_t)(e - s)) == 0)
                required[b] = found = 1;
        }
        if (!found) {
            fprintf(stderr, "STEM_TEST_REQUIRE: unknown backend '%.*s'\n", (int)(e - s), s);
            return -1;
        }
        s = e;
    }
    return 0;
}

/* Runs one CMocka group of `n` tests on `dev` and tallies their outcome. */
/* STEM_TEST_ONLY: 1 when backend b should run (no variable: all). */
static int backend_selected(int b)
{
    const char *s = getenv("STEM_TEST_ONLY");
    if (!s || !*s)
        return 1;
    const char *name = stem_backend_name((stem_backend)b);
    const size_t len = strlen(name);
    for (const char *p = s; (p = strstr(p, name)) != NULL; p += len)
        if ((p == s || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
            return 1;
    return 0;
}

/* A GPU backend running on a CPU (PoCL, lavapipe) is an emulator: 10-100x
 * slower than the CPU backend on the same cores, while the double reference
 * costs the same. There the cheap 90% of the table runs in full and the
 * costliest cases (88% of the reference work) 1 in 3, picked by index so
 * every run picks the same ones. STEM_TEST_EMULATED=all runs everything. */
#define CONF_EMULATED_COST_CAP 3e8
/* Vulkan on lavapipe is slower still (every buffer load of a shader is a
 * per-lane loop of branches in llvmpipe 22.x, and its compiles take seconds):
 * there the costly cases run 1 in 10 and those past CONF_VULKAN_EMULATED_MAX
 * (the N = 4096 / 9000 dense-ish ones, 60-90% of its run time) not at all.
 * Every selector, dtype, layout, GQA shape and block size stays in the cheap
 * cases; long rows are test_vk_limits' (32K-key rows, XAttention at 2K). */
#define CONF_VULKAN_EMULATED_MAX 2e9
static int emulated_device(const conf_device *dev)
{
    const char *all = getenv("STEM_TEST_EMULATED");
    return !dev->info.is_gpu && dev->info.backend != STEM_BACKEND_CPU &&
           !(all && strcmp(all, "all") == 0);
}

/* The sweep of an emulated device: the costly cases 1 in 3 (1 in 10 and
 * none past CONF_VULKAN_EMULATED_MAX on Vulkan), counted along `in`. */
static int emulated_sweep(const conf_device *dev, const conf_case *in, int n, conf_case *out)
{
    const int emulated = emulated_device(dev);
    const int vulkan = dev->info.backend == STEM_BACKEND_VULKAN;
    int m = 0, costly = 0, wide = 0;
    for (int i = 0; i < n; ++i) {
        if (emulated && in[i].cost > CONF_EMULATED_COST_CAP &&
            ((vulkan && in[i].cost > CONF_VULKAN_EMULATED_MAX) || costly++ % (vulkan ? 10 : 3) != 0))
            continue;
        /* lavapipe compiles a head_dim 256 pipeline in about a CPU-minute:
         * one such case there, every one on real GPUs */
        if (emulated && vulkan && in[i].head_dim > 128 && wide++ > 0)
            continue;
        out[m++] = in[i];
    }
    return m;
}

/* make test's slice (default level) where a whole sweep does not fit its
 * 5-minute budget on 2 cores: emulated devices (PoCL, lavapipe; per case
 * 10-100x the CPU backend's time, mostly kernel builds and interpretation)
 * and the CPU backend rerun on a lower ISA (STEM_CPU_MAX_ISA; the best ISA
 * runs everything). A case is kept 1 in keep[class] by a hash of its name,
 * class by estimated reference cost, so the slice does not move when cases
 * are added elsewhere in the table; 0 keeps none of the class. The cheap
 * classes keep every selector, dtype, layout, GQA shape and block size. */
static const double make_test_class_max[] = {1e7, 3e7, 1e8, 3e8, 1e9};
#define MT_CLASSES 6
static const int make_test_keep_opencl[MT_CLASSES] = {1, 1, 2, 4, 8, 0};
static const int make_test_keep_vulkan[MT_CLASSES] = {2, 2, 5, 8, 0, 0};
static const int make_test_keep_isa[MT_CLASSES] = {1, 1, 1, 2, 4, 0};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; ++s)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int make_test_keeps(const conf_device *dev, const conf_case *c)
{
    const char *isa = getenv("STEM_CPU_MAX_ISA");
    const int *keep = NULL;
    if (emulated_device(dev))
        keep = dev->info.backend == STEM_BACKEND_VULKAN ? make_test_keep_vulkan
                                                        : make_test_keep_opencl;
    else if (dev->info.backend == STEM_BACKEND_CPU && isa && *isa)
        keep = make_test_keep_isa;
    if (!keep)
        return 1;
    int cls = 0;
    while (cls < MT_CLASSES - 1 && c->cost > make_test_class_max[cls])
        ++cls;
    return keep[cls] > 0 && name_hash(c->name) % (uint64_t)keep[cls] == 0;
}

/* The table cases to run on dev, out of in[0, n): at the full level the
 * emulated sweep of the default table's cases (in[0, n_default)) and,
 * separately, of the full level's extra ones (in[n_default, n)), so it runs
 * at least everything the default level ever ran there; at make test's
 * level its slice of the sweep, the rest going to deferred. */
static int thin_cases_for(const conf_device *dev, int make_test, const conf_case *in, int n,
                          int n_default, conf_case *out, conf_case *deferred, int *n_deferred)
{
    *n_deferred = 0;
    int m = emulated_sweep(dev, in, n_default, out);
    m += emulated_sweep(dev, in + n_default, n - n_default, out + m);
    if (!make_test)
        return m;
    int kept = 0;
    for (int i = 0; i < m; ++i) {
        if (make_test_keeps(dev, &out[i]))
            out[kept++] = out[i];
        else
            deferred[(*n_deferred)++] = out[i];
    }
    return kept;
}

/* Under ASan + UBSan everything runs 3-10x slower while the misuse cases,
 * which matter most there, stay cheap. STEM_TEST_LEVEL=asan keeps every
 * misuse case, the table cases up to CONF_ASAN_CHEAP (85% of the table, 7%
 * of its reference work) and 1 in 4 of those up to CONF_ASAN_MID, picked by
 * position so every run picks the same ones; every selector, dtype, layout
 * and buffer kind still appears. */
#define CONF_ASAN_CHEAP 1e8
#define CONF_ASAN_MID 1e9
static int asan_subset(conf_case *cases, int n)
{
    int m = 0, mid = 0;
    for (int i = 0; i < n; ++i) {
        const double c = cases[i].cost;
        if (c > CONF_ASAN_MID || (c > CONF_ASAN_CHEAP && mid++ % 4 != 0))
            continue;
        cases[m++] = cases[i];
    }
    return m;
}

static void run_group(const char *group, conf_device *dev, const conf_case *cases,
                      const conf_misuse *mis, int n, tally *t)
{
    if (n == 0)
        return;
    conf_test *tests = calloc((size_t)n, sizeof *tests);
    struct CMUnitTest *units = calloc((size_t)n, sizeof *units);
    if (!tests || !units) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (int i = 0; i < n; ++i) {
        tests[i].dev = dev;
        tests[i].c = cases ? &cases[i] : NULL;
        tests[i].m = mis ? &mis[i] : NULL;
        units[i].name = cases ? cases[i].name : mis[i].name;
        units[i].test_func = cases ? test_case : test_misuse;
        units[i].setup_func = setup;
        units[i].teardown_func = teardown;
        units[i].initial_state = &tests[i];
    }
    _cmocka_run_group_tests(group, units, (size_t)n, NULL, NULL);
    for (int i = 0; i < n; ++i) {
        if (tests[i].status == CONF_PASSED)
            t->passed++;
        else if (tests[i].status == CONF_SKIPPED)
            t->skipped++;
        else
            t->failed++;
    }
    free(tests);
    free(units);
}

/* OpenMP's default wait policy keeps idle threads spinning between parallel
 * regions; this suite alternates short library and reference regions with
 * serial checking, and on a small or busy machine the spinners starve the
 * checking thread (4-10x slower small cases). The policy is read when the
 * runtime loads, so set it and start again. Results do not depend on it. */
static void prefer_passive_openmp(char **argv)
{
#if defined(__linux__)
    if (getenv("OMP_WAIT_POLICY") || getenv("STEM_TEST_NO_REEXEC"))
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("STEM_TEST_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the default policy */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    prefer_passive_openmp(argv);
    const char *summary_path = NULL, *deferred_path = NULL;
    int list_only = 0, plan_only = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--summary") == 0 && i + 1 < argc) {
            summary_path = argv[++i];
        } else if (strcmp(argv[i], "--deferred") == 0 && i + 1 < argc) {
            deferred_path = argv[++i];
        } else if (strcmp(argv[i], "--list") == 0) {
            list_only = 1;
        } else if (strcmp(argv[i], "--plan") == 0) {
            plan_only = 1;
        } else {
            fprintf(stderr, "usage: %s [--summary PATH] [--deferred PATH] [--list] [--plan]\n",
                    argv[0]);
            return 2;
        }
    }
    int required[CONF_BACKENDS];
    if (parse_required(required) != 0)
        return 2;
    const int level = env_is("STEM_TEST_LEVEL", "full");
    const int asan_level = env_is("STEM_TEST_LEVEL", "asan");
    const int make_test = !level && !asan_level;
    const char *filter = getenv("STEM_TEST_FILTER");
    if (filter && !*filter)
        filter = NULL;

    conf_case *all_cases = NULL;
    conf_misuse *all_mis = NULL;
    const int n_all_cases = conf_build_cases(level, &all_cases);
    const int n_all_mis = conf_build_misuse(&all_mis);
    if (n_all_cases < 0 || n_all_mis < 0) {
        fprintf(stderr, "out of memory building the case table\n");
        return 2;
    }
    /* At the full level, the default table's cases first (in their own
     * order), then the extra ones: thin_cases_for sweeps them apart. */
    int n_default = n_all_cases;
    if (level) {
        conf_case *defaults = NULL;
        const int nd = conf_build_cases(0, &defaults);
        conf_case *sorted = malloc(sizeof *sorted * (size_t)(n_all_cases ? n_all_cases : 1));
        char *taken = calloc((size_t)(n_all_cases ? n_all_cases : 1), 1);
        if (nd < 0 || !sorted || !taken) {
            fprintf(stderr, "out of memory building the case table\n");
            return 2;
        }
        int k = 0;
        for (int j = 0; j < nd; ++j)
            for (int i = 0; i < n_all_cases; ++i)
                if (!taken[i] && strcmp(all_cases[i].name, defaults[j].name) == 0) {
                    sorted[k++] = all_cases[i];
                    taken[i] = 1;
                    break;
                }
        n_default = k;
        for (int i = 0; i < n_all_cases; ++i)
            if (!taken[i])
                sorted[k++] = all_cases[i];
        free(all_cases);
        free(defaults);
        free(taken);
        all_cases = sorted;
    }
    /* Apply the filter in place. */
    int nc = 0, nm = 0, nc_default = 0;
    double cost = 0.0;
    const int n_table = asan_level ? asan_subset(all_cases, n_all_cases) : n_all_cases;
    for (int i = 0; i < n_table; ++i)
        if (!filter || strstr(all_cases[i].name, filter)) {
            nc_default += i < n_default;
            all_cases[nc++] = all_cases[i];
            cost += all_cases[i].cost;
        }
    for (int i = 0; i < n_all_mis; ++i)
        if (!filter || strstr(all_mis[i].name, filter))
            all_mis[nm++] = all_mis[i];
    if (list_only) {
        for (int i = 0; i < nm; ++i)
            printf("%s\n", all_mis[i].name);
        for (int i = 0; i < nc; ++i)
            printf("%s  (%.3g MAC)\n", all_cases[i].name, all_cases[i].cost);
        printf("%d table cases + %d misuse/API cases, reference work %.3g MAC\n", nc, nm, cost);
        free(all_cases);
        free(all_mis);
        return 0;
    }
    printf("conformance: %d table cases + %d misuse/API cases per device (%s level), "
           "reference work %.3g multiply-adds\n",
           nc, nm, level ? "full" : asan_level ? "asan" : "default", cost);

    FILE *deferred_file = NULL;
    if (deferred_path && !(deferred_file = fopen(deferred_path, "w"))) {
        fprintf(stderr, "cannot write %s\n", deferred_path);
        return 2;
    }
    tally per[CONF_BACKENDS];
    int have_device[CONF_BACKENDS] = {0};
    memset(per, 0, sizeof per);
    uint32_t count = 0;
    if (stem_device_count(&count) != STEM_OK)
        count = 0;
    for (uint32_t d = 0; d < count; ++d) {
        conf_device dev;
        memset(&dev, 0, sizeof dev);
        dev.global_index = d;
        stem_device_info_init(&dev.info);
        if (stem_device_get_info(d, &dev.info) != STEM_OK ||
            (unsigned)dev.info.backend >= CONF_BACKENDS) {
            fprintf(stderr, "device %u: stem_device_get_info failed: %s\n", d, stem_last_error());
            continue;
        }
        if (!backend_selected((int)dev.info.backend))
            continue;
        tally *t = &per[dev.info.backend];
        have_device[dev.info.backend] = 1;
        const char *bname = stem_backend_name(dev.info.backend);
        if (plan_only) {
            conf_case *run = malloc(sizeof *run * (size_t)(nc ? nc : 1));
            conf_case *later = malloc(sizeof *later * (size_t)(nc ? nc : 1));
            if (!run || !later) {
                fprintf(stderr, "out of memory\n");
                return 2;
            }
            int n_later = 0;
            const int nr =
                thin_cases_for(&dev, make_test, all_cases, nc, nc_default, run, later, &n_later);
            for (int i = 0; i < nr; ++i)
                printf("run %s #%u %s\n", bname, dev.info.backend_index, run[i].name);
            for (int i = 0; i < n_later; ++i)
                printf("defer %s #%u %s\n", bname, dev.info.backend_index, later[i].name);
            free(run);
            free(later);
            continue;
        }
        stem_context_desc cd;
        stem_context_desc_init(&cd);
        cd.device = (int32_t)d;
        stem_status st = stem_context_create(&cd, &dev.ctx);
        if (st != STEM_OK) {
            /* A listed device must open: every one of its cases fails. */
            printf("[  FAILED  ] %s #%u (%s): stem_context_create returned %s: %s\n", bname,
                   dev.info.backend_index, dev.info.name, stem_status_name(st), stem_last_error());
            t->failed += nc + nm;
            continue;
        }
        char group[640];
        snprintf(group, sizeof group, "%s #%u misuse+api (%s)", bname, dev.info.backend_index,
                 dev.info.name);
        run_group(group, &dev, NULL, all_mis, nm, t);
        snprintf(group, sizeof group, "%s #%u conformance (%s; %s)", bname,
                 dev.info.backend_index, dev.info.name, dev.info.detail);
        conf_case *dev_cases = malloc(sizeof *dev_cases * (size_t)(nc ? nc : 1));
        conf_case *later = malloc(sizeof *later * (size_t)(nc ? nc : 1));
        if (!dev_cases || !later) {
            fprintf(stderr, "out of memory\n");
            return 2;
        }
        int n_later = 0;
        const int ndc =
            thin_cases_for(&dev, make_test, all_cases, nc, nc_default, dev_cases, later, &n_later);
        if (emulated_device(&dev))
            printf("%s #%u runs on a CPU (emulated): the costliest cases 1 in %s "
                   "(STEM_TEST_EMULATED=all for every case)\n",
                   bname, dev.info.backend_index,
                   dev.info.backend == STEM_BACKEND_VULKAN
                       ? "10, none past 2e9 MAC, one at head_dim 256"
                       : "3");
        if (n_later)
            printf("%s #%u: make test runs %d of these %d table cases; the other %d run in "
                   "make test-full (STEM_TEST_LEVEL=full)%s%s\n",
                   bname, dev.info.backend_index, ndc, ndc + n_later, n_later,
                   deferred_path ? ", listed in " : "", deferred_path ? deferred_path : "");
        for (int i = 0; deferred_file && i < n_later; ++i)
            fprintf(deferred_file, "%s #%u: %s\n", bname, dev.info.backend_index, later[i].name);
        free(later);
        run_group(group, &dev, dev_cases, NULL, ndc, t);
        conf_run_fixture_cases(dev.ctx, level, filter, &t->passed, &t->failed, &t->skipped);
        free(dev_cases);
        if (stem_context_destroy(dev.ctx) != STEM_OK) {
            printf("[  FAILED  ] %s #%u: stem_context_destroy: %s\n", bname,
                   dev.info.backend_index, stem_last_error());
            t->failed++;
        }
    }
    if (plan_only) {
        free(all_cases);
        free(all_mis);
        return 0;
    }
    /* Backends without a device: skipped, or failed when required. */
    for (int b = 0; b < CONF_BACKENDS; ++b) {
        if (have_device[b])
            continue;
        stem_backend_info bi;
        stem_backend_info_init(&bi);
        stem_backend_query((stem_backend)b, &bi);
        if (!backend_selected(b)) {
            printf("[ SKIPPED  ] %s: not in STEM_TEST_ONLY\n", stem_backend_name((stem_backend)b));
        } else if (required[b]) {
            printf("[  FAILED  ] %s: required by STEM_TEST_REQUIRE but has no device: %s\n",
                   stem_backend_name((stem_backend)b), bi.reason);
            per[b].failed += nc + nm;
        } else {
            printf("[ SKIPPED  ] %s: %s\n", stem_backend_name((stem_backend)b), bi.reason);
            per[b].skipped += nc + nm;
        }
    }

    tally total = {0, 0, 0};
    char lines[CONF_BACKENDS + 1][160];
    for (int b = 0; b < CONF_BACKENDS; ++b) {
        snprintf(lines[b], sizeof lines[b], "%s: %ld passed, %ld failed, %ld skipped",
                 stem_backend_name((stem_backend)b), per[b].passed, per[b].failed,
                 per[b].skipped);
        total.passed += per[b].passed;
        total.failed += per[b].failed;
        total.skipped += per[b].skipped;
    }
    snprintf(lines[CONF_BACKENDS], sizeof lines[0], "total: %ld passed, %ld failed, %ld skipped",
             total.passed, total.failed, total.skipped);
    for (int i = 0; i <= CONF_BACKENDS; ++i)
        printf("%s\n", lines[i]);
    fflush(stdout);
    int rc = total.failed > 0;
    if (summary_path) {
        FILE *f = fopen(summary_path, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s\n", summary_path);
            rc = 2;
        } else {
            for (int i = 0; i <= CONF_BACKENDS; ++i)
                fprintf(f, "%s\n", lines[i]);
            fclose(f);
        }
    }
    if (deferred_file)
        fclose(deferred_file);
    free(all_cases);
    free(all_mis);
    return rc;
}
