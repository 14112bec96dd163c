"""Stage-2 speed at the paper's token shape (4608 tokens x 1280, float16), in one run:
the time to read every clip once; the fast attentive probe's train/eval throughput; the straightforward
cross-attention probe's throughput on the same clips; a whole `fer-probe cv` against the time needed to read
the bytes it reads.

python benchmarks/bench_probe.py [--videos 30] [--clips 2] [--tokens 4608] [--width 1280]
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import append_row, machine

from fer_probe.cv import run_cv
from fer_probe.probes import AttentiveProbe
from fer_probe.reader import CacheReader, ClipRef
from fer_probe.train import ProbeConfig
from tests.conftest import write_planted_store


def throughput(probe: AttentiveProbe, clips: torch.Tensor, train: bool, repeats: int) -> float:
    """clips/s of forward (+ backward and a fused AdamW step when training) on a batch of clips."""
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3, fused=True)
    labels = torch.zeros(len(clips), dtype=torch.long)

    def step():
        if train:
            loss = F.cross_entropy(probe(clips), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                probe(clips)
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return repeats * len(clips) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos-per-class", type=int, default=1)
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=4608)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--keep", default=None, help="folder to keep the store in (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_probe_"))
    store = folder / "paper_shape.zarr"
    if not store.exists():
        write_planted_store(store, n_subjects=args.subjects, per_class=args.videos_per_class, classes=4,
                            clips=args.clips, tokens=args.tokens, width=args.width, signal=0.3)
    reader = CacheReader(store)
    refs = [ClipRef(v, k, 0) for v in range(len(reader)) for k in range(reader.clips)]
    started = time.perf_counter()
    for _ in reader.batches([[r] for r in refs]):
        pass
    read_s = (time.perf_counter() - started) / len(refs)
    clip_mb = reader.clip_bytes / 1e6
    print(f"store: {len(reader)} videos x {reader.clips} clips of [{reader.num_tokens}, {reader.width}] float16 "
          f"({clip_mb:.1f} MB per clip) on {machine(torch.device('cpu'))}")
    print(f"read every clip once: {read_s * 1e3:.1f} ms per clip ({clip_mb / read_s:.0f} MB/s, {1 / read_s:.1f} "
          "clips/s)")

    sample = torch.from_numpy(np.stack([reader.clip(r) for r in refs[:8]]))  # [8, N, D], cv's default batch
    torch.manual_seed(0)
    probe = AttentiveProbe(args.width, 4, num_heads=16)
    fast_train = throughput(probe, sample, train=True, repeats=3)
    fast_eval = throughput(probe, sample, train=False, repeats=3)
    probe.fast = False
    slow_train = throughput(probe, sample[:2], train=True, repeats=1)
    slow_eval = throughput(probe, sample, train=False, repeats=1)
    print(f"fast attentive probe:           train {fast_train:7.2f} clips/s, eval {fast_eval:7.2f} clips/s")
    print(f"straightforward cross-attention: train {slow_train:7.2f} clips/s, eval {slow_eval:7.2f} clips/s")
    print(f"speed-up: train {fast_train / slow_train:.0f}x, eval {fast_eval / slow_eval:.0f}x (goal >= 20x)")

    run_cv(str(store), folder / "warm-up", ProbeConfig(epochs=1, device="cpu"), n_folds=2)  # start-up aside
    n_train = len(reader) * (args.folds - 1)  # every video trains in all folds but its own
    clip_reads = n_train * args.epochs + len(reader) * reader.clips
    floor = clip_reads * read_s
    row = {"machine": machine(torch.device("cpu")), "tokens": args.tokens, "width": args.width,
           "read_ms_per_clip": round(read_s * 1e3, 2), "fast_train_clips_per_s": round(fast_train, 2),
           "fast_eval_clips_per_s": round(fast_eval, 2), "slow_train_clips_per_s": round(slow_train, 3),
           "slow_eval_clips_per_s": round(slow_eval, 3), "cv_read_floor_seconds": round(floor, 2)}
    for precision in ("float32", "bfloat16"):
        cfg = ProbeConfig(epochs=args.epochs, batch_size=8, device="cpu", memory_budget_mb=0, precision=precision)
        started = time.perf_counter()
        run_cv(str(store), folder / f"run-{precision}", cfg, n_folds=args.folds)  # streams every read
        cv_s = time.perf_counter() - started
        print(f"fer-probe cv {precision} ({args.folds} folds x {args.epochs} epochs, streaming): {cv_s:.1f} s for "
              f"{clip_reads} clip reads; reading those bytes alone: {floor:.1f} s; ratio {cv_s / floor:.2f} "
              "(goal <= 1.5)")
        row |= {f"cv_{precision}_seconds": round(cv_s, 2), f"cv_{precision}_ratio": round(cv_s / floor, 3)}
    append_row("probe", row)
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
