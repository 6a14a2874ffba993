#!/usr/bin/env bash
# Host-side check of a CUDA build without a CUDA torch: every C++ translation unit whose code
# changes in CUDA builds (the launchers under csrc/kernels/cuda/, and the files with
# NODE_EXT_WITH_CUDA sections) is compiled with g++ -fsyntax-only, NODE_EXT_WITH_CUDA defined,
# against torch's headers and the CUDA toolkit's. A CPU torch wheel lacks one header that torch's
# CMake generates in CUDA builds (c10/cuda/impl/cuda_cmake_macros.h, one #define); a temporary
# copy stands in for it. Skips (exit 0) when nvcc or torch is missing.
#
#   bash .ci/cuda_host_check.sh                       the installed torch's headers, the CUDA files
#   bash .ci/cuda_host_check.sh --all --torch-include DIR
#                                                     every translation unit, against the headers in
#                                                     DIR (another torch's include/; see
#                                                     .ci/torch_version_check.sh)
set -u
cd "$(dirname "$0")/.." || exit 1

all=0
torch_root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --all) all=1 ;;
    --torch-include) torch_root="$2"; shift ;;
    *) echo "unknown argument: $1"; exit 2 ;;
  esac
  shift
done

if ! command -v nvcc >/dev/null 2>&1; then
  echo "nvcc not found: CUDA host-side check skipped"
  exit 0
fi
# The toolkit's include directory, as nvcc itself reports it.
cuda_include=$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ INCLUDES="-I\([^"]*\)".*/\1/p' | head -n 1)
if [ -n "$torch_root" ]; then
  torch_includes="-I$torch_root -I$torch_root/torch/csrc/api/include"
else
  torch_includes=$(python -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I' + p for p in include_paths()))" 2>/dev/null) || {
    echo "torch not importable: CUDA host-side check skipped"
    exit 0
  }
fi
python_include=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/c10/cuda/impl/cuda_cmake_macros.h"
# A CUDA wheel has the generated header: the stand-in is searched after torch's own then.
stand_in="-I$tmp"
[ -n "$torch_root" ] && [ -f "$torch_root/c10/cuda/impl/cuda_cmake_macros.h" ] && stand_in=""

if [ "$all" -eq 1 ]; then
  mapfile -t files < <(find csrc -name '*.cpp' | grep -v '^csrc/tests/' | LC_ALL=C sort)
else
  mapfile -t files < <( { find csrc/kernels/cuda -name '*.cpp'; grep -rl --include='*.cpp' NODE_EXT_WITH_CUDA csrc; } \
                        | grep -v '^csrc/tests/' | LC_ALL=C sort -u)
fi
status=0
for f in "${files[@]}"; do
  # shellcheck disable=SC2086
  if g++ -std=c++17 -fsyntax-only -Wno-c++20-extensions -DNODE_EXT_WITH_CUDA -DTORCH_EXTENSION_NAME=_C \
       -DTORCH_API_INCLUDE_EXTENSION_H -Icsrc $stand_in $torch_includes -I"$cuda_include" -I"$python_include" "$f"; then
    echo "OK   $f"
  else
    echo "FAIL $f"
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "CUDA host-side check FAILED"
else
  echo "CUDA host-side check passed (${#files[@]} files)"
fi
exit "$status"
