"""Builds node_ext and its native extension node_ext._C.

Configuration (environment variables):
  FORCE_CUDA=1   build the CUDA kernels even if torch reports no CUDA device / toolkit check fails
  USE_CUDA=0     never build the CUDA kernels
  DEBUG=1        -O0 -g instead of -O3
  NODE_EXT_PORTABLE=1  no -march=native (a binary for any CPU of the architecture, slower kernels)
  MAX_JOBS=N     parallel compile jobs (ninja)

Install with `pip install --no-build-isolation .`: with build isolation pip would build against a
freshly downloaded torch (a multi-GB CUDA wheel) in a throwaway environment instead of the torch
you run with, and the extension must match that torch exactly.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_choice():
    if os.environ.get("USE_CUDA") == "0":
        return False, "USE_CUDA=0"
    if os.environ.get("FORCE_CUDA") == "1":
        return True, "FORCE_CUDA=1"
    if torch.version.cuda is None:
        return False, "torch %s is a CPU build" % torch.__version__
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    return True, "torch %s with CUDA %s, toolkit at %s" % (torch.__version__, torch.version.cuda, CUDA_HOME)


def _sources(with_cuda):
    cpp = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cpp = [s for s in cpp if not s.startswith("csrc/tests/")]
    cuda_launchers = [s for s in cpp if s.startswith("csrc/kernels/cuda/")]
    cpp = [s for s in cpp if s not in cuda_launchers]
    if not with_cuda:
        return cpp
    cu = sorted(glob.glob("csrc/kernels/cuda/*.cu"))
    return cpp + cuda_launchers + cu


def _extension():
    with_cuda, why = _cuda_choice()
    debug = os.environ.get("DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx = opt + ["-std=c++17", "-fvisibility=hidden", "-Wno-unknown-pragmas"]
    # Built for the machine it runs on (vectorised kernels need the CPU's instruction set);
    # NODE_EXT_PORTABLE=1 builds for the baseline of the architecture instead.
    portable = os.environ.get("NODE_EXT_PORTABLE") == "1"
    if not portable:
        cxx.append("-march=native")
    macros = []
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")])
    if with_cuda:
        # With no GPU visible (FORCE_CUDA=1 on a build machine), torch cannot pick the architectures
        # itself; build for the ones .ci/nvcc_check.sh checks (A100, H100) plus PTX for later GPUs.
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        why += ", architectures %s" % (os.environ.get("TORCH_CUDA_ARCH_LIST") or "of the visible GPUs")
        macros.append(("NODE_EXT_WITH_CUDA", None))
        nvcc = opt + ["-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        ext = CUDAExtension("node_ext._C", _sources(True), define_macros=macros,
                            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)
    else:
        ext = CppExtension("node_ext._C", _sources(False), define_macros=macros,
                           extra_compile_args={"cxx": cxx}, **kwargs)
    print("node_ext build: %s (%s), %s, %s" % ("CUDA + CPU" if with_cuda else "CPU only", why,
                                               "debug -O0 -g" if debug else "-O3",
                                               "portable" if portable else "-march=native"))
    return ext


# The pure-PyTorch fallback reads the tableaus from this copy when the extension is not built.
shutil.copyfile(os.path.join(ROOT, "csrc", "tableaus.h"), os.path.join(ROOT, "node_ext", "_tableaus.h"))

setup(
    name="node_ext",
    version="0.1.0",
    description="Neural ODEs for PyTorch with a native (C++/CUDA) solver core",
    packages=find_packages(include=["node_ext", "node_ext.*"]),
    package_data={"node_ext": ["_tableaus.h"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={
        # Peers are pinned to the versions the benchmarks and compatibility tests are written for.
        "test": ["pytest", "scipy", "torchdiffeq==0.2.5", "torchode==1.0.1", "matplotlib", "tqdm", "scikit-learn"],
        "bench": ["matplotlib", "tqdm", "torchdiffeq==0.2.5", "torchode==1.0.1"],
        "examples": ["matplotlib", "tqdm", "scikit-learn"],
    },
    entry_points={"console_scripts": ["node-ext=node_ext.cli:main"]},
)
