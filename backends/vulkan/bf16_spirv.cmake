# cmake -DIN=x.spv -DOUT=y.spv -DTOOLS=<dir with spirv-dis, spirv-as, spirv-val> -P bf16_spirv.cmake
# The KHR attention module with its f16 type made bfloat16 (SPV_KHR_bfloat16):
# the kernel's only 16-bit float uses are the A/B matrices, the P square and
# the constant 1.0, all of which bf16 allows, so the same kernel reads bf16
# tensors in place. glslang has no bf16 GLSL before 15; this edits the
# disassembly instead. Any failure (old tools, a validation error) leaves an
# empty module: the library then takes bf16 through f16 copies.
set(asm ${OUT}.spvasm)
file(WRITE ${OUT} "")
execute_process(COMMAND ${TOOLS}/spirv-dis ${IN} -o ${asm} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(STATUS "bf16 module: spirv-dis failed; left out")
  return()
endif()
file(READ ${asm} text)
string(REGEX MATCHALL "= OpTypeFloat 16\n" f16types "${text}")
list(LENGTH f16types nf16)
string(FIND "${text}" "OpCapability Float16\n" cap)
if(NOT nf16 EQUAL 1 OR cap EQUAL -1)
  message(STATUS "bf16 module: expected one f16 type and the Float16 capability; left out")
  return()
endif()
string(REPLACE "= OpTypeFloat 16\n" "= OpTypeFloat 16 BFloat16KHR\n" text "${text}")
string(REPLACE "OpCapability Float16\n"
       "OpCapability BFloat16TypeKHR\nOpCapability BFloat16CooperativeMatrixKHR\n" text "${text}")
string(REPLACE "OpExtension \"SPV_KHR_cooperative_matrix\"\n"
       "OpExtension \"SPV_KHR_cooperative_matrix\"\nOpExtension \"SPV_KHR_bfloat16\"\n" text "${text}")
file(WRITE ${asm} "${text}")
execute_process(COMMAND ${TOOLS}/spirv-as --target-env vulkan1.2 ${asm} -o ${OUT}.tmp
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0)
  execute_process(COMMAND ${TOOLS}/spirv-val --target-env vulkan1.2 ${OUT}.tmp
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
endif()
if(NOT rc EQUAL 0)
  message(STATUS "bf16 module: ${err}; left out")
  return()
endif()
file(RENAME ${OUT}.tmp ${OUT})
