/* stem: command-line front end of libstem (info, run, bench, demo, eval). */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "stem.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: stem <command> [options]\n"
            "\n"
            "commands:\n"
            "  info     backends, devices, and why a backend is unavailable\n"
            "  run      Stem attention on q.npy k.npy v.npy; writes outputs + summary.json\n"
            "  bench    Llama-8B layer shapes: ms per stage, density, GFLOP/s, error vs dense\n"
            "  demo     Stem vs dense at 16K tokens on structured input, best backend\n"
            "  eval     SmolLM2-135M on libstem: perplexity and KL vs dense per selector\n"
            "\n"
            "`stem <command> --help` lists a command's options. libstem %s\n",
            stem_version_string());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("stem (libstem) %s\n", stem_version_string());
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"info", cmd_info}, {"run", cmd_run}, {"bench", cmd_bench}, {"demo", cmd_demo}, {"eval", cmd_eval}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "stem: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
