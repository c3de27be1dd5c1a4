#include "convert.h"

#include <math.h>
#include <string.h>
#include <strings.h>

int tool_parse_dtype(const char *s, stem_dtype *out) {
    if (!strcasecmp(s, "f32") || !strcasecmp(s, "float32"))
        *out = STEM_DTYPE_F32;
    else if (!strcasecmp(s, "f16") || !strcasecmp(s, "float16") || !strcasecmp(s, "half"))
        *out = STEM_DTYPE_F16;
    else if (!strcasecmp(s, "bf16") || !strcasecmp(s, "bfloat16"))
        *out = STEM_DTYPE_BF16;
    else
        return -1;
    return 0;
}
