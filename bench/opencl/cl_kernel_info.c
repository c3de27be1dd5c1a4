/* Builds the OpenCL kernel source with given options on the first GPU
 * device (or device DEV) and prints the build log and, per kernel, the
 * private memory and work-group size the driver reports; writes the program
 * binary (PTX on NVIDIA) to OUTFILE, so `ptxas -arch=sm_90 -v OUTFILE` tells
 * the registers and spills of each kernel. Tuning aid for the attention tiles:
 *   cc -O2 -o BUILD/cl_kernel_info bench/opencl/cl_kernel_info.c -l:libOpenCL.so.1
 *   BUILD/cl_kernel_info OUTFILE "OPTIONS" common.cl score.cl select.cl attention.cl ...
 * OPTIONS as the library passes them (see ocl_plan_init), e.g.
 *   "-cl-std=CL1.2 -DIN_DTYPE=2 -DHEAD_DIM=128 -DBQ=64 -DKT=64 -DRPT=8 -DTX=8
 *    -DKPT=8 -DSLICE=1 -DDS=32 -DVS=32 -DSPF=1 -DSEL_CAP=12256 -DSEL_LS=256
 *    -DHAS_FP64=1 -DHAS_FP16=1 -cl-nv-verbose" */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b)
        b[n] = '\0';
    *len = (size_t)n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s OUTFILE OPTIONS FILE.cl...\n", argv[0]);
        return 2;
    }
    /* The sources concatenated in order, as embed_kernels.cmake does. */
    size_t total = 1;
    char *src = calloc(1, 1);
    for (int i = 3; i < argc; i++) {
        size_t n = 0;
        char *b = slurp(argv[i], &n);
        if (!b) {
            fprintf(stderr, "cannot read %s\n", argv[i]);
            return 2;
        }
        src = realloc(src, total + n + 1);
        memcpy(src + total - 1, b, n);
        total += n + 1;
        src[total - 2] = '\n';
        src[total - 1] = '\0';
        free(b);
    }
    cl_platform_id plats[8];
    cl_uint np = 0;
    clGetPlatformIDs(8, plats, &np);
    cl_device_id dev = NULL;
    for (cl_uint p = 0; p < np && !dev; p++)
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    if (!dev) {
        fprintf(stderr, "no OpenCL GPU\n");
        return 1;
    }
    cl_int err = CL_SUCCESS;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    const char *srcs[1] = {src};
    cl_program prog = clCreateProgramWithSource(ctx, 1, srcs, NULL, &err);
    const cl_int berr = clBuildProgram(prog, 1, &dev, argv[2], NULL, NULL);
    size_t lsize = 0;
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &lsize);
    char *log = calloc(lsize + 1, 1);
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, lsize, log, NULL);
    printf("build %s; log:\n%s\n", berr == CL_SUCCESS ? "ok" : "FAILED", log);
    if (berr != CL_SUCCESS)
        return 1;
    const char *names[] = {"block_attention"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cl_kernel k = clCreateKernel(prog, names[i], &err);
        if (err != CL_SUCCESS)
            continue;
        cl_ulong priv = 0, local = 0;
        size_t wg = 0;
        clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_PRIVATE_MEM_SIZE, sizeof priv, &priv, NULL);
        clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
        clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
        printf("%s: private %llu B, local %llu B, max work-group %zu\n", names[i],
               (unsigned long long)priv, (unsigned long long)local, wg);
        clReleaseKernel(k);
    }
    size_t bsize = 0;
    clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bsize, &bsize, NULL);
    unsigned char *bin = malloc(bsize ? bsize : 1);
    unsigned char *bins[1] = {bin};
    clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL);
    FILE *f = fopen(argv[1], "wb");
    if (f) {
        fwrite(bin, 1, bsize, f);
        fclose(f);
    }
    printf("binary: %zu bytes -> %s\n", bsize, argv[1]);
    return 0;
}
