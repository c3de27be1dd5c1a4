/* stem demo (`make demo`): Stem against dense at 16K tokens on structured
 * input, on the best available backend; prints time, density and error. */
#include <string.h>

#include "bench.h"
#include "cmds.h"

static void help(void) {
    puts("usage: stem demo [options]\n"
         "Stem vs dense attention at 16384 tokens on structured input, on the default\n"
         "device (best GPU, else the CPU). Shape: Llama-3-8B (Hq 32, Hkv 8, d 128) on a\n"
         "GPU; Hq 8, Hkv 2, d 128 on the CPU so a 2-core machine finishes in reasonable\n"
         "time. Override with the options below (--n takes one value here).\n"
         "demo options:");
    bench_print_opts_help();
    tool_print_common_help(stdout);
}

int cmd_demo(int argc, char **argv) {
    bench_cli c;
    bench_cli_init(&c);
    c.n[0] = 16384;
    c.nn = 1;
    int parsed = bench_cli_parse(&c, argc, argv, "demo", help);
    if (parsed >= 0)
        return parsed;
    if (c.nn != 1)
        return tool_error("demo: --n takes a single value"), 2;

    stem_context *ctx = NULL;
    stem_device_info dev;
    if (tool_open_context(&c.o, &ctx, &dev) != 0)
        return 1;
    /* CPU: a quarter of the heads (same GQA ratio) and a single timed run,
     * because dense attention at 16K on two cores takes many seconds. */
    if (!dev.is_gpu) {
        if (!c.hq_set)
            c.shape.hq = 8;
        if (!c.hkv_set)
            c.shape.hkv = 2;
    }
    int warmup = c.warmup >= 0 ? c.warmup : dev.is_gpu ? 2 : 0;
    int repeat = c.repeat >= 0 ? c.repeat : dev.is_gpu ? 5 : 1;
    c.shape.n = c.n[0];

    char line[600];
    tool_device_line(&dev, line, sizeof line);
    printf("stem demo: Stem vs dense attention, %lld tokens, %s input\n", (long long)c.shape.n,
           c.shape.kind == STEM_SYNTH_STRUCTURED ? "structured" : "random");
    printf("  device    %s\n", line);
    printf("  shape     B=%lld Hq=%lld Hkv=%lld N=%lld d=%lld %s%s\n", (long long)c.shape.batch,
           (long long)c.shape.hq, (long long)c.shape.hkv, (long long)c.shape.n,
           (long long)c.shape.d, stem_dtype_name(c.shape.dtype),
           !dev.is_gpu && !c.hq_set && !c.hkv_set ? " (CPU default; --hq/--hkv to change)" : "");
    printf("  selector  %s, block %d, stride %d; median of %d run%s after %d warm-up\n",
           stem_selector_name(c.o.cfg.selector), (int)c.o.cfg.block_size, (int)c.o.cfg.stride,
           repeat, repeat == 1 ? "" : "s", warmup);
    fflush(stdout);

    bench_result r;
    int rc = bench_case(ctx, &c.o, &c.shape, warmup, repeat, c.dense, c.quiet, c.trace, &r);
    if (rc == 0) {
        printf("  stem      %9.2f ms  (score %.2f + select %.2f + attention %.2f)\n", r.stem_ms,
               r.score_ms, r.select_ms, r.attn_ms);
        if (r.has_dense) {
            printf("  dense     %9.2f ms  (same attention kernel, every causal block)\n",
                   r.dense_ms);
            printf("  speedup   %9.2fx\n", r.dense_ms / r.stem_ms);
        }
        printf("  density   %9.4f  of causal blocks kept (k_start %d of %lld blocks%s)\n",
               r.density, (int)r.info.k_start, (long long)r.info.num_k_blocks,
               r.info.dense ? ", dense plan" : "");
        if (r.has_dense)
            printf("  rel err   %9.2e  relative L2 of the Stem output vs dense\n", r.rel_err);
    }
    stem_context_destroy(ctx);
    return rc;
}
