#!/usr/bin/env bash
# Fetch, where pip reaches PyPI, the wheels that `make bench-gpu` installs on a CUDA machine without network:
# the store and video libraries its image lacks (CPython 3.12, x86-64 manylinux). About 40 MB, mostly av.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
for wheel in zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 av==18.1.0; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$wheel"
done
ls -la .whl
