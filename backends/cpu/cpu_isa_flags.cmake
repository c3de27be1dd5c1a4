# CPU backend: per-file ISA flags. Each SIMD kernel file is compiled for its
# ISA only; the rest of the library stays baseline x86-64 (never
# -march=native), and cpu_isa.c picks a table at run time from CPUID + XGETBV.
include(CheckCCompilerFlag)
set(STEM_CPU_AVX2_FLAGS -mavx2 -mfma -mf16c)
set(STEM_CPU_AVX512_FLAGS -mavx512f -mavx512bw -mavx512vl -mavx2 -mfma -mf16c)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  check_c_compiler_flag("-mavx512f -mavx512bw -mavx512vl -mavx2 -mfma -mf16c" STEM_CPU_CC_AVX512)
endif()
if(STEM_CPU_CC_AVX512)
  set_source_files_properties(
    ${CMAKE_CURRENT_SOURCE_DIR}/backends/cpu/cpu_kernels_avx2.c
    PROPERTIES COMPILE_OPTIONS "${STEM_CPU_AVX2_FLAGS}")
  # avx512_bf16 (vdpbf16ps) for one kernel of that file, in its own table.
  check_c_compiler_flag("-mavx512f -mavx512bf16" STEM_CPU_CC_AVX512BF16)
  if(STEM_CPU_CC_AVX512BF16)
    list(APPEND STEM_CPU_AVX512_FLAGS -mavx512bf16)
    target_compile_definitions(stem_objects PRIVATE STEM_CPU_AVX512_BF16=1)
  endif()
  set_source_files_properties(
    ${CMAKE_CURRENT_SOURCE_DIR}/backends/cpu/cpu_kernels_avx512.c
    PROPERTIES COMPILE_OPTIONS "${STEM_CPU_AVX512_FLAGS}")
  # AMX tiles (TDPBF16PS) for the pair GEMM, in the AMX table's own file
  # (gcc 11+). STEM_CPU_AMX=OFF leaves it out.
  option(STEM_CPU_AMX "Build the CPU backend's AMX-BF16 table where the compiler can" ON)
  if(STEM_CPU_AMX AND STEM_CPU_CC_AVX512BF16)
    check_c_compiler_flag("-mavx512f -mavx512bf16 -mamx-tile -mamx-bf16" STEM_CPU_CC_AMX)
  endif()
  if(STEM_CPU_AMX AND STEM_CPU_CC_AMX)
    set_source_files_properties(
      ${CMAKE_CURRENT_SOURCE_DIR}/backends/cpu/cpu_kernels_amx.c
      PROPERTIES COMPILE_OPTIONS "${STEM_CPU_AVX512_FLAGS};-mamx-tile;-mamx-bf16")
    target_compile_definitions(stem_objects PRIVATE STEM_CPU_AMX=1)
  endif()
  target_compile_definitions(stem_objects PRIVATE STEM_CPU_SIMD_KERNELS=1)
endif()
