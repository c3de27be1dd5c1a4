/* OpenCL backend: kernel arguments, launches and scratch buffers. */
#include "ocl_common.h"

void stem_ocl_args_begin(stem_ocl_args *a, const stem_ocl_api *cl, cl_kernel k)
{
    a->cl = cl;
    a->kernel = k;
    a->next = 0;
    a->err = CL_SUCCESS;
}

static void arg(stem_ocl_args *a, size_t size, const void *value)
{
    if (a->err != CL_SUCCESS)
        return;
    a->err = a->cl->clSetKernelArg(a->kernel, a->next++, size, value);
}

void stem_ocl_arg_mem(stem_ocl_args *a, cl_mem m) { arg(a, sizeof m, &m); }
void stem_ocl_arg_int(stem_ocl_args *a, int32_t v) { arg(a, sizeof(cl_int), &v); }
void stem_ocl_arg_long(stem_ocl_args *a, int64_t v) { arg(a, sizeof(cl_long), &v); }
void stem_ocl_arg_float(stem_ocl_args *a, float v) { arg(a, sizeof(cl_float), &v); }

void stem_ocl_arg_opt_tensor(stem_ocl_args *a, const stem_tensor *t, cl_mem fallback)
{
    if (t) {
        stem_ocl_arg_tensor(a, t);
        return;
    }
    stem_ocl_arg_mem(a, fallback);
    stem_ocl_arg_long(a, -1);
    for (int i = 0; i < 4; i++)
        stem_ocl_arg_long(a, 0);
}

void stem_ocl_arg_tensor(stem_ocl_args *a, const stem_tensor *t)
{
    stem_ocl_arg_mem(a, stem_ocl_mem(t->buffer));
    /* The core checked the offset is a multiple of the element size. */
    stem_ocl_arg_long(a, (int64_t)(t->offset / stem_dtype_size(t->dtype)));
    for (int i = 0; i < 4; i++)
        stem_ocl_arg_long(a, t->strides[i]);
}

stem_status stem_ocl_launch(const stem_plan *plan, stem_ocl_args *a, const char *name,
                            const size_t groups[3], const size_t local[3])
{
    if (a->err != CL_SUCCESS)
        return stem_ocl_fail(a->err, name);
    if (groups[0] == 0 || groups[1] == 0 || groups[2] == 0)
        return STEM_OK;
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const size_t global[3] = {groups[0] * local[0], groups[1] * local[1], groups[2] * local[2]};
    const cl_int err =
        c->cl->clEnqueueNDRangeKernel(c->queue, a->kernel, 3, NULL, global, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? STEM_OK : stem_ocl_fail(err, name);
}

stem_status stem_ocl_scratch(const stem_plan *plan, size_t bytes, cl_mem *out)
{
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    cl_int err = CL_SUCCESS;
    *out = c->cl->clCreateBuffer(c->context, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return stem_ocl_fail(err, "clCreateBuffer (scratch)");
    }
    return STEM_OK;
}
