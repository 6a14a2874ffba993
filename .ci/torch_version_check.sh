#!/usr/bin/env bash
# Compiles (g++ -fsyntax-only, CUDA build) every translation unit of csrc/ against the headers of
# another torch release, without installing it: the wheel is downloaded (pip download --no-deps,
# about 0.5 GB; nothing is installed) and only its include/ directory is unpacked. Meant for the
# torch of the GPU machine the device tool lends (2.11.0 with CUDA 13.0), before a session on it:
#
#   bash .ci/torch_version_check.sh 2.11.0 [CACHE_DIR]
#
# Not part of .ci/run (the download); the CPU wheel's headers are checked there.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: torch_version_check.sh VERSION [CACHE_DIR]}"
cache="${2:-${TMPDIR:-/tmp}/node_ext-torch-$version}"
mkdir -p "$cache"
if [ ! -d "$cache/include" ]; then
  python -m pip download -q --no-deps --only-binary=:all: -d "$cache" "torch==$version"
  python - "$cache" <<'PY'
import glob, sys, zipfile
cache = sys.argv[1]
wheel = glob.glob(cache + "/torch-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    z.extractall(cache + "/unpacked", [n for n in z.namelist() if n.startswith("torch/include/") or n == "torch/version.py"])
print("headers of", [l for l in open(cache + "/unpacked/torch/version.py") if l.startswith("__version__")][0].strip())
PY
  mv "$cache/unpacked/torch/include" "$cache/include"
fi
bash .ci/cuda_host_check.sh --all --torch-include "$cache/include"
