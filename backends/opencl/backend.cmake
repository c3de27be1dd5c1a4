# OpenCL backend: host code, kernels embedded as a C array at build time.
# The runtime is opened with dlopen (libOpenCL.so.1 or STEM_OPENCL_LIBRARY);
# only the Khronos headers (Debian opencl-c-headers) are needed to build.
set(STEM_OCL_DIR ${CMAKE_CURRENT_SOURCE_DIR}/backends/opencl)
find_path(STEM_OPENCL_INCLUDE_DIR CL/cl.h)
if(NOT STEM_OPENCL_INCLUDE_DIR)
  message(FATAL_ERROR "STEM_OPENCL=ON needs the OpenCL headers (CL/cl.h): apt-get install opencl-c-headers")
endif()

# Order matters: common.cl defines what the others use.
set(STEM_OCL_KERNELS ${STEM_OCL_DIR}/kernels/common.cl ${STEM_OCL_DIR}/kernels/score.cl
                     ${STEM_OCL_DIR}/kernels/select.cl ${STEM_OCL_DIR}/kernels/attention.cl
                     ${STEM_OCL_DIR}/kernels/attention_slice.cl)
string(REPLACE ";" "|" STEM_OCL_KERNEL_LIST "${STEM_OCL_KERNELS}")
set(STEM_OCL_EMBEDDED ${CMAKE_CURRENT_BINARY_DIR}/ocl_kernel_source.c)
add_custom_command(
  OUTPUT ${STEM_OCL_EMBEDDED}
  COMMAND ${CMAKE_COMMAND} -DOUT=${STEM_OCL_EMBEDDED} -DSOURCES=${STEM_OCL_KERNEL_LIST}
          -P ${STEM_OCL_DIR}/embed_kernels.cmake
  DEPENDS ${STEM_OCL_KERNELS} ${STEM_OCL_DIR}/embed_kernels.cmake
  COMMENT "Embedding OpenCL kernels"
  VERBATIM)

file(GLOB STEM_OCL_SOURCES CONFIGURE_DEPENDS ${STEM_OCL_DIR}/*.c)
target_sources(stem_objects PRIVATE ${STEM_OCL_SOURCES} ${STEM_OCL_EMBEDDED})
target_include_directories(stem_objects PRIVATE ${STEM_OCL_DIR} ${STEM_OPENCL_INCLUDE_DIR})
target_compile_definitions(stem_objects PRIVATE STEM_HAVE_OPENCL=1)
find_package(Threads REQUIRED)
target_link_libraries(stem PRIVATE Threads::Threads)

# A kernel that fails to build must come back as STEM_ERR_KERNEL_BUILD with
# the build log; checked by breaking the build on purpose.
if(STEM_BUILD_TESTS)
  add_executable(test_opencl_build_error ${STEM_OCL_DIR}/tests/test_build_error.c)
  target_link_libraries(test_opencl_build_error PRIVATE stem)
  add_test(NAME opencl_build_error COMMAND test_opencl_build_error)
  set_tests_properties(opencl_build_error PROPERTIES SKIP_RETURN_CODE 77)
endif()
