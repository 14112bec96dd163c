"""Encoder forward throughput (clips/s) and achieved TFLOP/s against the model's arithmetic.

python benchmarks/bench_encoder.py --preset vit_huge --resolution 384 --frames 16 --batch 8 --device cuda --dtype bf16
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_row, machine, timed

from fer_cache.encoders import build_encoder

TINY = dict(embed_dim=96, depth=2, num_heads=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="vit_large, vit_huge, vit_giant, ... or tiny")
    parser.add_argument("--family", default="vjepa", choices=["vjepa", "vjepa2"])
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    tiny = args.preset == "tiny"
    resolution = args.resolution or (64 if tiny else 224)
    frames = args.frames or (8 if tiny else 16)
    dims = TINY if tiny else {"arch": args.preset}
    model = build_encoder(family=args.family, resolution=resolution, frames_per_clip=frames, device=device, **dims)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if device.type == "cpu":
        dtype = torch.float32  # CPU inference runs in float32
    forward = torch.compile(model) if args.compile else model
    video = torch.randn(args.batch, 3, frames, resolution, resolution, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            forward(video)

    seconds = timed(step, device, args.warmup, args.iters)
    clips_per_s = args.batch / seconds
    tflops = model.flops_per_clip() * clips_per_s / 1e12
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    precision = args.dtype if device.type == "cuda" else "fp32"
    print(f"{args.preset} {resolution}px {frames}f batch {args.batch} {precision} "
          f"on {machine(device)}: {clips_per_s:.2f} clips/s, {tflops:.2f} TFLOP/s achieved "
          f"({model.flops_per_clip() / 1e12:.3f} TFLOP per clip, {model.cfg.num_tokens} tokens), "
          f"peak memory {memory:.1f} GiB")
    append_row("encoder", {"machine": machine(device), "preset": args.preset, "resolution": resolution,
                           "frames": frames, "batch": args.batch, "dtype": str(dtype).replace("torch.", ""),
                           "compile": args.compile, "clips_per_s": round(clips_per_s, 3),
                           "tflops": round(tflops, 4), "peak_memory_gib": round(memory, 2)})


if __name__ == "__main__":
    main()
