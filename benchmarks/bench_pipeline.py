"""How many clips/s the extraction pipeline itself carries, decoding excluded: a stand-in encoder returns
ViT-H-sized tokens (4608 x 1280 float16) at a set rate, and the real batch encoder (uploads, downloads, finiteness
checks, per-video assembly) and writer thread commit them to a real store. On a GPU box the encoder's time is the
GPU's; the question here is whether everything around it keeps up (>= 60 clips/s: an H100 at 60% of its bf16 rate).

python benchmarks/bench_pipeline.py [--videos 24] [--clips 8] [--batch 16] [--rate 10000]
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
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import append_row, machine, peak_rss_gb

from fer_cache.extraction.batching import BatchEncoder, DecodedVideo
from fer_cache.extraction.writer import Writer
from fer_cache.inputs.datasets import VideoItem
from fer_cache.store import schema, tune_process, writing


class StandInEncoder(torch.nn.Module):
    """Returns the same ViT-H-sized float16 tokens for every clip, taking 1/rate seconds per clip (sleeping, as the
    host does while a GPU works)."""

    def __init__(self, batch: int, tokens: int, width: int, rate: float):
        super().__init__()
        self.tokens = torch.randn(batch, tokens, width).to(torch.float16)  # [B, N, D]
        self.seconds_per_clip = 1.0 / rate

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        time.sleep(len(video) * self.seconds_per_clip)
        return self.tokens[:len(video)]


def run(store: Path, videos: int, args) -> float:
    """Seconds to push `videos` decoded videos through the pipeline into a fresh store."""
    items = [VideoItem(id=f"v{i}", path=f"v{i}.mp4", label=0, label_name="neutral", subject="1") for i in range(videos)]
    layout = schema.Layout(videos=videos, clips=args.clips, views=1, tokens=args.tokens, width=args.width,
                           frames_per_clip=args.frames)
    store = writing.create_store(store, layout, items, attrs={"fingerprint": "stand-in", "label_names": ["neutral"]})
    clips = torch.zeros((args.clips, 1, args.frames, args.size, args.size, 3), dtype=torch.uint8)  # decode excluded
    frame_index = np.zeros((args.clips, args.frames), dtype=np.int32)
    encoder_model = StandInEncoder(args.batch, args.tokens, args.width, args.rate)
    started = time.perf_counter()
    writer = Writer(store)
    writer.start()
    encoder = BatchEncoder(encoder_model, writer, batch_size=args.batch, device=torch.device("cpu"),
                           out_dtype=torch.float16, prepare=lambda video: video)  # normalising is the GPU's work
    for i in range(videos):
        encoder.add(DecodedVideo(index=i, clips=clips, frame_index=frame_index, n_frames=64))
    encoder.flush()
    writer.close()
    seconds = time.perf_counter() - started
    assert (store.group["videos/status"][:] == schema.DONE).all()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=float, default=10000.0, help="stand-in encoder clips/s (the GPU's share)")
    parser.add_argument("--tokens", type=int, default=4608)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    tune_process()
    try:
        short = run(folder / "short.zarr", args.videos // 4, args)
        long = run(folder / "long.zarr", args.videos, args)
    finally:
        shutil.rmtree(folder)
    clips = (args.videos - args.videos // 4) * args.clips
    steady = clips / (long - short)  # start-up and the last batch's drain cancel
    mb = args.tokens * args.width * 2 / 1e6
    print(f"{args.videos} videos x {args.clips} clips of [{args.tokens}, {args.width}] float16 ({mb:.1f} MB a clip), "
          f"batch {args.batch}, stand-in encoder at {args.rate:g} clips/s, on {machine(torch.device('cpu'))}")
    print(f"runs of {args.videos // 4} and {args.videos} videos: {short:.2f} s and {long:.2f} s; "
          f"{steady * mb:.0f} MB/s of tokens committed; peak memory {peak_rss_gb():.1f} GB")
    append_row("pipeline", {"machine": machine(torch.device("cpu")), "tokens": args.tokens, "width": args.width,
                            "batch": args.batch, "stand_in_rate": args.rate, "clips_per_s": round(steady, 1)})
    print(f"pipeline: {steady:.1f} clips/s")


if __name__ == "__main__":
    main()
