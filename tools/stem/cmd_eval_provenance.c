/* stem eval: the commit each result row records (STEM_COMMIT, else git). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_eval.h"

void eval_git_commit(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    const char *env = getenv("STEM_COMMIT");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    FILE *p = popen("git rev-parse --short=12 HEAD 2>/dev/null", "r");
    if (!p) return;
    char line[64] = "";
    if (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0]) snprintf(out, cap, "%s", line);
    }
    pclose(p);
}
