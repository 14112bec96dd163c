"""Extraction time against the decode floor: decoding and scaling every frame once with PyAV, same machine, same run.

python benchmarks/bench_extract.py [--videos DIR] [--count 8] [--frames 110] [--size 1280x720] [--workers 2]
Without --videos it writes RAVDESS-named 720p test videos first (moving patterns, libx264).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_row, machine

from fer_cache.config import load_config
from fer_cache.extraction.pipeline import ExtractRequest, run_extraction
from fer_cache.inputs.datasets.synthetic import write_video
from fer_cache.inputs.video import decode_video

CONFIG = """\
datasets:
  bench: {{adapter: ravdess, root: {root}}}
encoders:
  tiny: {{family: vjepa, checkpoint: null, embed_dim: 96, depth: 2, num_heads: 4, resolution: {resolution},
          frames_per_clip: 16}}
  vit_huge: {{family: vjepa, arch: vit_huge, checkpoint: null, resolution: 384, frames_per_clip: 16}}
extraction: {{frames_per_clip: 16, frame_step: 4, clips_per_video: 8, spatial_views: 1, dtype: float16}}
"""


def make_videos(root: Path, count: int, frames: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(count):
        images = []
        for t in range(frames):
            base = (np.sin(xx / 40 + t / 5 + i) + np.cos(yy / 30 - t / 7)) * 60 + 128
            image = np.stack([base, np.roll(base, t * 3, axis=1), base[::-1]], axis=-1)
            images.append(np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8))
        folder = root / f"Actor_{i + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"01-01-03-01-01-01-{i + 1:02d}.mp4", images, fps=30)


def main() -> None:
    from fer_cache.store import tune_process
    tune_process()  # as the command-line tools do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=None, help="a RAVDESS-named folder to measure instead")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--frames", type=int, default=110)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--encoder", default="tiny", choices=["tiny", "vit_huge"])
    parser.add_argument("--resolution", type=int, default=64, help="tiny encoder input size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    root = Path(args.videos) if args.videos else folder / "videos"
    if not args.videos:
        width, height = map(int, args.size.split("x"))
        make_videos(root, args.count, args.frames, width, height)
    (folder / "data.yaml").write_text(CONFIG.format(root=root, resolution=args.resolution))
    config = load_config(folder / "data.yaml")
    resize = args.resolution if args.encoder == "tiny" else 384
    paths = sorted(p for p in root.rglob("*.mp4"))
    started = time.perf_counter()
    frames = sum(len(decode_video(p, resize)) for p in paths)
    floor = time.perf_counter() - started
    started = time.perf_counter()
    request = ExtractRequest(dataset="bench", encoder=args.encoder, out=str(folder / "bench.zarr"),
                             device=args.device, batch_size=args.batch_size, workers=args.workers, overwrite=True)
    summary = run_extraction(config, request)
    extract_s = time.perf_counter() - started
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    print(f"{len(paths)} videos, {frames} frames, on {machine(device)}")
    print(f"decode floor (decode + scale every frame once, one process): {floor:.2f} s "
          f"({frames / floor:.0f} frames/s)")
    print(f"fer-cache extract ({args.encoder}, {args.workers} decode workers, batch {args.batch_size}): "
          f"{extract_s:.2f} s, {summary.clips_now / extract_s:.1f} clips/s; ratio {extract_s / floor:.2f} "
          "(goal <= 1.3 with the tiny encoder on the CPU)")
    append_row("extract", {"machine": machine(device), "encoder": args.encoder, "videos": len(paths),
                           "frames": frames, "workers": args.workers, "batch": args.batch_size,
                           "decode_floor_s": round(floor, 3), "extract_s": round(extract_s, 3),
                           "clips_per_s": round(summary.clips_now / extract_s, 2),
                           "ratio": round(extract_s / floor, 3)})
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
