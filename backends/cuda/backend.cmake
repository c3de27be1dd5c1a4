# CUDA backend: host C (driver API through dlopen, no CUDA headers) plus
# kernels compiled by nvcc into fatbins (SASS sm_80 + sm_90a, PTX compute_90;
# the sm90 attention image sm_90a only)
# that are embedded in libstem as C arrays.
find_program(STEM_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH /usr/local/cuda PATH_SUFFIXES bin)
if(NOT STEM_NVCC)
  message(FATAL_ERROR "STEM_CUDA=ON needs nvcc (set CUDA_HOME or put nvcc on PATH)")
endif()
set(STEM_CUDA_ARCH_FLAGS
    -gencode=arch=compute_80,code=sm_80
    -gencode=arch=compute_90a,code=sm_90a
    -gencode=arch=compute_90,code=compute_90
    CACHE STRING "nvcc -gencode flags for the CUDA kernels")

set(cuda_dir ${CMAKE_CURRENT_SOURCE_DIR}/backends/cuda)
set(cuda_gen ${CMAKE_CURRENT_BINARY_DIR}/cuda_kernels)
file(MAKE_DIRECTORY ${cuda_gen})
# The sm90 attention kernel uses sm_90a-only instructions (wgmma, setmaxnreg):
# its image holds sm_90a SASS alone and is loaded on compute capability 9.0.
set(STEM_CUDA_SM90_FLAGS -gencode=arch=compute_90a,code=sm_90a
    CACHE STRING "nvcc -gencode flags for the sm_90a-only kernels")
set(cuda_headers ${cuda_dir}/kernels/common.cuh ${cuda_dir}/kernels/kernel_abi.h
    ${cuda_dir}/kernels/attn_common.cuh ${cuda_dir}/kernels/wgmma.cuh)
set(cuda_embedded)
foreach(kernel score select copy attention_generic attention_mma attention_sm90)
  set(src ${cuda_dir}/kernels/${kernel}.cu)
  set(fatbin ${cuda_gen}/${kernel}.fatbin)
  set(csrc ${cuda_gen}/${kernel}_fatbin.c)
  if(kernel STREQUAL "attention_sm90")
    set(arch_flags ${STEM_CUDA_SM90_FLAGS})
  else()
    set(arch_flags ${STEM_CUDA_ARCH_FLAGS})
  endif()
  add_custom_command(
    OUTPUT ${fatbin}
    COMMAND ${STEM_NVCC} -fatbin -O3 -std=c++17 ${arch_flags} -I${cuda_dir}/kernels
            -o ${fatbin} ${src}
    DEPENDS ${src} ${cuda_headers}
    COMMENT "nvcc: ${kernel}.cu -> fatbin"
    VERBATIM)
  add_custom_command(
    OUTPUT ${csrc}
    COMMAND ${CMAKE_COMMAND} -DIN=${fatbin} -DOUT=${csrc} -DNAME=stem_cuda_fatbin_${kernel}
            -P ${cuda_dir}/embed_fatbin.cmake
    DEPENDS ${fatbin} ${cuda_dir}/embed_fatbin.cmake
    VERBATIM)
  list(APPEND cuda_embedded ${csrc})
endforeach()

target_sources(stem_objects PRIVATE
  ${cuda_dir}/cuda_driver.c
  ${cuda_dir}/cuda_backend.c
  ${cuda_dir}/cuda_stages.c
  ${cuda_dir}/cuda_variants.c
  ${cuda_embedded})
target_include_directories(stem_objects PRIVATE ${cuda_dir})
target_compile_definitions(stem_objects PRIVATE STEM_HAVE_CUDA=1)
