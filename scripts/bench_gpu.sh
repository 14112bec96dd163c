#!/usr/bin/env bash
# make bench-gpu: a fresh CUDA machine that has torch but lacks zarr, av, numcodecs, donfig and google-crc32c.
# They are installed from the wheels in .whl/ beside the project (no network; scripts/gpu_wheels.sh fetches them
# where pip reaches PyPI), then benchmarks/bench_gpu.py runs (under 5 minutes on an H100/H200).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import zarr, av, numcodecs, donfig, google_crc32c" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "zarr/av/numcodecs/donfig/google-crc32c are missing and .whl/ holds no wheels: run scripts/gpu_wheels.sh" \
         "on a machine that reaches PyPI, and bring .whl/ along" >&2
    exit 1
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fer-site .whl/*.whl
  export PYTHONPATH=/tmp/fer-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
exec $PY benchmarks/bench_gpu.py "$@"
