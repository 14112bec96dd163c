#!/usr/bin/env bash
# The compact-store checks on a CUDA machine without network (wheels from scripts/gpu_wheels.sh in .whl/): the
# probe checks (benchmarks/check_cuda_probe.py, compact stores included), extraction with and without --rank at the
# paper's encoder shape (random ViT-H/16-384 weights on synthetic videos), and the floor benchmark on a full store
# and its rank-256 compaction. Writes what it prints to $OUT (or /tmp/gpu-compact).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-compact}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 benchmarks/check_cuda_probe.py 2>&1 | tee "$OUT/check_cuda_probe.txt"
python3 -m fer_cache.cli demo-data /tmp/demo --actors 4 --repetitions 1 > /dev/null
cat > /tmp/gpu.yaml <<YAML
datasets:
  demo: {adapter: ravdess, root: /tmp/demo}
encoders:
  vith-random: {family: vjepa, arch: vit_huge, checkpoint: null, resolution: 384, frames_per_clip: 16}
extraction: {frames_per_clip: 16, frame_step: 4, clips_per_video: 8, spatial_views: 1, dtype: int8, basis_videos: 8}
YAML
for rank in "" 256; do
  python3 -m fer_cache.cli extract --dataset demo --encoder vith-random --config /tmp/gpu.yaml --device cuda \
      --out /tmp/ex${rank}.zarr --batch-size 16 --compile off ${rank:+--rank $rank} 2>&1 | grep -v "━" | tee "$OUT/extract${rank:-full}.txt"
  python3 -m fer_cache.cli info /tmp/ex${rank}.zarr | head -8 | tee -a "$OUT/extract${rank:-full}.txt"
done
/usr/bin/time -v python3 -m fer_cache.cli compact /tmp/ex.zarr --rank 256 --out /tmp/ex-c.zarr 2>&1 \
    | grep -v "━" | grep -E "compacted|Elapsed|Maximum resident" | tee "$OUT/compact.txt"
timeout 330 python3 benchmarks/bench_probe.py --mode floor --rank 256 --epochs 4 --device cuda --repeats 2 2>&1 \
    | tee "$OUT/bench_compact.txt"
