/* Conformance cases on real SmolLM2 activations (see fixture.c). */
#ifndef CONF_FIXTURE_H
#define CONF_FIXTURE_H

#include "stem.h"

/* Runs the fixture cases whose name contains filter (NULL: all) on ctx;
 * level 1 adds the 8K and second-layer cases. Missing fixture files count
 * as skipped. */
void conf_run_fixture_cases(stem_context *ctx, int level, const char *filter, long *passed,
                            long *failed, long *skipped);

#endif
