/* dtype names on the command line (conversions themselves: stem_convert). */
#ifndef STEM_TOOL_CONVERT_H
#define STEM_TOOL_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "stem.h"

/* "f32" | "f16" | "bf16" (also "float32", "float16", "bfloat16"). */
int tool_parse_dtype(const char *s, stem_dtype *out);

#endif
