# cmake -DOUT=<file.c> -DSOURCES="a.cl|b.cl" -P embed_kernels.cmake
# Writes the .cl files, concatenated in order, as one NUL-terminated C array
# (stem_ocl_kernel_source) so the library carries its kernels.
string(REPLACE "|" ";" SOURCES "${SOURCES}")
set(hex "")
foreach(src IN LISTS SOURCES)
  get_filename_component(name ${src} NAME)
  file(READ ${src} body HEX)
  string(HEX "#line 1 \"${name}\"\n" marker)
  string(APPEND hex "${marker}${body}0a")
endforeach()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT}.tmp "/* Generated from the .cl files in backends/opencl/kernels; do not edit. */\n"
                      "const char stem_ocl_kernel_source[] = {\n${bytes}0x00};\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
