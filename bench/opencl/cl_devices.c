/* Prints what the OpenCL kernels' shapes depend on, per device: compute
 * units, clock, local memory, work-group size, native float vector width and
 * the extensions (cl_khr_fp16, cl_khr_subgroups, cl_intel_subgroups, ...).
 * Build (dev machine, into the build folder carried to the GPU machine):
 *   cc -O2 -o BUILD/cl_devices bench/opencl/cl_devices.c -l:libOpenCL.so.1 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdio.h>

int main(void)
{
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0) {
        printf("no OpenCL platform\n");
        return 1;
    }
    for (cl_uint p = 0; p < np && p < 8; p++) {
        char pname[256] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        cl_device_id devs[8];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 8, devs, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd && d < 8; d++) {
            char name[256] = "", ext[8192] = "";
            cl_uint cus = 0, mhz = 0, vw = 0;
            cl_ulong local = 0;
            size_t wg = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof name, name, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof mhz, &mhz, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof vw, &vw, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_EXTENSIONS, sizeof ext, ext, NULL);
            printf("%s | %s: %u CUs, %u MHz, local %llu bytes, max work-group %zu, native float "
                   "width %u\n  extensions: %s\n",
                   pname, name, cus, mhz, (unsigned long long)local, wg, vw, ext);
        }
    }
    return 0;
}
