"""Builds libstem with CMake from the repository this package lives in and
bundles libstem.so inside the package (stem/_lib/). The Python side is pure
ctypes; the wheel is platform-specific only because of the bundled library.

Environment:
  STEM_BACKENDS      comma list among cuda,opencl,vulkan (default: each whose
                     build tool is found: nvcc, OpenCL headers, glslc)
  STEM_CMAKE_ARGS    extra arguments for the CMake configure step
  STEM_BUILD_JOBS    parallel build jobs (default: CPU count)
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent  # the libstem repository


def default_backends():
    found = []
    if shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists():
        found.append("cuda")
    if Path("/usr/include/CL/cl.h").exists():
        found.append("opencl")
    if shutil.which("glslc"):
        found.append("vulkan")
    return found


class BuildWithLibstem(build_py):
    def run(self):
        super().run()
        if not (SOURCE / "api" / "stem.h").exists():
            raise RuntimeError(f"libstem sources not found at {SOURCE} (build from the "
                               "repository: pip install ./python)")
        env_b = os.environ.get("STEM_BACKENDS")
        backends = [b for b in env_b.split(",") if b] if env_b is not None else default_backends()
        build = HERE / "build" / "cmake"
        build.mkdir(parents=True, exist_ok=True)
        args = ["cmake", "-S", str(SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                "-DSTEM_BUILD_TESTS=OFF", "-DSTEM_BUILD_TOOLS=OFF", "-DSTEM_BUILD_EXAMPLES=OFF",
                "-DSTEM_BUILD_STATIC=OFF", "-DSTEM_INSTALL=OFF"]
        nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
        for b in ("cuda", "opencl", "vulkan"):
            args.append(f"-DSTEM_{b.upper()}={'ON' if b in backends else 'OFF'}")
        if "cuda" in backends and Path(nvcc).exists():
            args.append(f"-DSTEM_NVCC={nvcc}")
        args += shlex.split(os.environ.get("STEM_CMAKE_ARGS", ""))
        jobs = os.environ.get("STEM_BUILD_JOBS", str(os.cpu_count() or 2))
        print("stem: building libstem with backends cpu" + "".join("," + b for b in backends))
        subprocess.check_call(args)
        subprocess.check_call(["cmake", "--build", str(build), "--target", "stem", "-j", jobs])
        libs = sorted(build.glob("libstem.so.*.*.*")) or sorted(build.glob("libstem.so*"))
        if not libs:
            raise RuntimeError(f"libstem.so not found in {build}")
        dest = Path(self.build_lib) / "stem" / "_lib"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(libs[-1], dest / "libstem.so")


class BinaryDistribution(Distribution):
    """The wheel carries a shared library: platform-specific."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibstem}, distclass=BinaryDistribution)
