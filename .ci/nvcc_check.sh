#!/usr/bin/env bash
# Compile check of every CUDA source under csrc/ for sm_80 and sm_90 (objects are thrown away).
# Skips (exit 0) when nvcc is not installed; exits non-zero when any file fails to compile.
set -u
cd "$(dirname "$0")/.." || exit 1

if ! command -v nvcc >/dev/null 2>&1; then
  echo "nvcc not found: CUDA compile check skipped"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mapfile -t files < <(find csrc -name '*.cu' -type f | LC_ALL=C sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "no .cu files under csrc/"
  exit 0
fi

echo "$(nvcc --version | tail -n 1)"
status=0
i=0
for f in "${files[@]}"; do
  for arch in 80 90; do
    i=$((i + 1))
    if nvcc -c -std=c++17 -I csrc -gencode "arch=compute_${arch},code=sm_${arch}" "$f" -o "$tmp/$i.o"; then
      echo "OK   sm_${arch}  $f"
    else
      echo "FAIL sm_${arch}  $f"
      status=1
    fi
  done
done

if [ "$status" -ne 0 ]; then
  echo "nvcc check FAILED"
else
  echo "nvcc check passed (${#files[@]} files x 2 archs)"
fi
exit "$status"
