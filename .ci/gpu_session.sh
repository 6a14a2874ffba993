#!/usr/bin/env bash
# The steps of a session on a lent GPU machine (the device tool; see the README of issue 2 and 5):
#   bash .ci/gpu_session.sh build   build node_ext._C in place with the CUDA kernels (FORCE_CUDA=1)
#   bash .ci/gpu_session.sh test    the test suite, which adds "cuda" to its devices when it can
#   bash .ci/gpu_session.sh bench   `node-ext bench --device cuda` (W0-W6 and B1) into $OUT/bench-cuda
#   bash .ci/gpu_session.sh all     the three in order (each step's log goes to $OUT too)
# Each step fits in one device call (10 minutes); an in-place build stays on a warm machine.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
step=${1:-all}

build() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  command -v nvcc && nvcc --version | tail -n 1
  FORCE_CUDA=1 MAX_JOBS="$(nproc)" python setup.py build_ext --inplace >"$out/build.log" 2>&1
  local rc=$?
  grep -m1 "node_ext build:" "$out/build.log"
  tail -n 5 "$out/build.log"
  python -c "import node_ext; print('built with CUDA:', node_ext._native.built_with_cuda())"
  return $rc
}

tests() {
  python -c "import torch, node_ext; assert torch.cuda.is_available() and node_ext._native.built_with_cuda(), 'no CUDA build'" || return 1
  python -m pytest -q -p no:cacheprovider tests -rfE >"$out/pytest.log" 2>&1
  local rc=$?
  tail -n 25 "$out/pytest.log"
  python -m pytest -q -p no:cacheprovider tests --collect-only -q 2>/dev/null | grep -c "cuda" | sed 's/^/cuda test cases: /'
  return $rc
}

bench() {
  python -m node_ext bench --device cuda --out "$out/bench-cuda" >"$out/bench.log" 2>&1
  local rc=$?
  tail -n 60 "$out/bench.log" | grep -v "node-ext bench:"
  return $rc
}

case "$step" in
  build) build ;;
  test) tests ;;
  bench) bench ;;
  all) build && tests; bench ;;
  *) echo "usage: $0 build|test|bench|all" >&2; exit 2 ;;
esac
