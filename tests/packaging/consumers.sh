#!/usr/bin/env bash
# Consumers of libstem outside its build: installs the build into a fresh
# prefix, then builds and runs examples/consumer three ways.
# usage: consumers.sh STEP SOURCE_DIR BUILD_DIR WORK_DIR C_COMPILER GENERATOR
#   STEP: install | find_package | pkg_config | add_subdirectory
set -euo pipefail
step=$1 src=$2 build=$3 work=$4 cc=$5 generator=$6
prefix=$work/prefix
jobs=${STEM_PACKAGING_JOBS:-2}

# A consumer must not see the source or build tree of libstem, only the prefix.
configure_consumer() { # dir, extra cmake args...
  local dir=$1; shift
  rm -rf "$dir"
  cmake -S "$src/examples/consumer" -B "$dir" -G "$generator" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF "$@"
}

run_consumer() { # executable
  echo "== $1"
  "$1"
}

# The static consumer must not need libstem.so at run time.
check_static() { # executable
  if readelf -d "$1" | grep -q 'NEEDED.*libstem'; then
    echo "FAIL: $1 links libstem.so, expected the static library" >&2
    exit 1
  fi
}

case $step in
install)
  rm -rf "$prefix"
  cmake --install "$build" --prefix "$prefix"
  for name in stem.h libstem.a 'libstem.so.[0-9]*' libstem.so stem.pc stemConfig.cmake \
              stemConfigVersion.cmake stemTargets.cmake; do
    [ -n "$(find "$prefix" -name "$name" | head -1)" ] || { echo "FAIL: install lacks $name" >&2; exit 1; }
  done
  grep -q 'stem::stem ' "$(find "$prefix" -name stemTargets.cmake)" \
    || { echo "FAIL: stemTargets.cmake does not define stem::stem" >&2; exit 1; }
  echo "installed into $prefix:"; (cd "$prefix" && find . -type f -o -type l | sort)
  ;;
find_package)
  configure_consumer "$work/find_package" -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build "$work/find_package" -j"$jobs"
  run_consumer "$work/find_package/consumer"
  check_static "$work/find_package/consumer_static"
  run_consumer "$work/find_package/consumer_static"
  ;;
pkg_config)
  pcdir=$(dirname "$(find "$prefix" -name stem.pc | head -1)")
  rm -rf "$work/pkg_config" && mkdir -p "$work/pkg_config"
  # Only the prefix's .pc files, none of the system's.
  PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH= \
    make -f "$src/examples/consumer/Makefile" OUT="$work/pkg_config" CC="$cc"
  run_consumer "$work/pkg_config/consumer"
  check_static "$work/pkg_config/consumer_static"
  run_consumer "$work/pkg_config/consumer_static"
  ;;
add_subdirectory)
  configure_consumer "$work/add_subdirectory" -DSTEM_SOURCE_DIR="$src"
  cmake --build "$work/add_subdirectory" -j"$jobs"
  run_consumer "$work/add_subdirectory/consumer"
  run_consumer "$work/add_subdirectory/consumer_static"
  ;;
*)
  echo "unknown step $step" >&2; exit 2 ;;
esac
