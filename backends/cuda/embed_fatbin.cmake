# cmake -DIN=x.fatbin -DOUT=x.c -DNAME=symbol -P embed_fatbin.cmake
# Writes the fatbin as a C array (aligned: the driver parses it in place).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" len)
math(EXPR bytes "${len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" body "${body}")
file(WRITE "${OUT}"
  "/* Generated from ${IN} by embed_fatbin.cmake; do not edit. */\n"
  "#include <stddef.h>\n"
  "__attribute__((aligned(64))) const unsigned char ${NAME}[${bytes}] = {\n${body}\n};\n"
  "const size_t ${NAME}_size = ${bytes};\n")
