"""The paper recipe on a full float16 store and on its rank-R int8 compaction, in one run
(bench_probe.py --mode floor --rank 256): wall times and their ratio, bytes per clip, each run's floor and the ratio
to it, and the projected whole RAVDESS protocol.

A compact store's floor has three parts: its token products in R dimensions (bench_floor.clip_matmuls at width R),
reading each needed clip once, and the parameter work that no token representation changes: every candidate's
update of its 20M parameters (the probe's forward and backward on pooled inputs, the gradient norm and the fused AdamW
step), timed here as the same probe step on one-token inputs, once per candidate and step the trainer takes.
"""

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_floor import HEADS, floor
from bench_probe import RAVDESS, read_time, timed_cv
from common import append_row, machine, synthetic_store

from fer_cache.store.compaction import CompactRequest, compact_store
from fer_probe.data.reader import CacheReader
from fer_probe.probes import registered
from fer_probe.training.optim import AdamW, clip_gradients, parameter_groups


def parameter_step(width: int, classes: int, batch: int, device: torch.device, repeats: int = 5) -> float:
    """Seconds of one candidate's update without token work: the attentive probe (paper settings) on one token per
    video, its loss, backward, gradient clipping and fused AdamW step; the fastest of the repeats."""
    kind = registered("attentive")
    probe = kind.create(width, classes, kind.make_settings(num_heads=HEADS, use_proj=True), device=device)
    optimizer = AdamW(parameter_groups(probe, 0.01), lr=1e-3)
    x = torch.randn(batch, 1, width, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(probe(x), y).backward()
        clip_gradients(probe, 10.0)
        optimizer.step()
    step()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def candidate_steps(run: Path, videos: int) -> int:
    """(candidate, step) pairs of a run with one candidate per fold: per epoch, the batches of the trainer's global
    batch size, each updating the folds with a training video in it."""
    probe = json.loads((run / "config.json").read_text())["probe"]
    folds = json.loads((run / "folds.json").read_text())["folds"]
    share = np.mean([len(f["train_subjects"]) / (len(f["train_subjects"]) + len(f["test_subjects"])) for f in folds])
    batch = max(1, round(probe["batch_size"] / share))
    steps = math.ceil(videos / batch)
    return probe["epochs"] * steps * len(folds)  # every fold has training videos in every batch here (30 videos)


def compact_mode(args) -> None:
    device = torch.device(args.device)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_compact_"))
    store, compact = folder / "paper.zarr", folder / f"paper-r{args.rank}-int8.zarr"
    if not store.exists():  # 30 videos x 8 clips: 10 subjects x 3 classes, as the floor mode
        synthetic_store(store, subjects=10, classes=3, per_class=1, clips=8, tokens=args.tokens, width=args.width)
    started = time.perf_counter()
    summary = compact_store(CompactRequest(source=str(store), out=str(compact), rank=args.rank, dtype="int8"))
    compact_s = time.perf_counter() - started
    before, after = summary.bytes_per_clip
    with CacheReader(store) as reader:
        videos, clips = len(reader), reader.clips
    print(f"paper recipe, {videos} videos x {clips} clips of [{args.tokens}, {args.width}], 5 subject folds, "
          f"{args.epochs} epochs, one candidate per fold, on {machine(device)}")
    print(f"fer-cache compact --rank {args.rank} --dtype int8: {compact_s:.1f} s; {before / 1e6:.2f} MB -> "
          f"{after / 1e6:.2f} MB a clip ({before / after:.1f}x smaller; the synthetic tokens keep "
          f"{summary.basis.explained:.1%} of their variance: random tokens have no principal directions)")
    row = {"machine": machine(device), "tokens": args.tokens, "width": args.width, "rank": args.rank,
           "videos": videos, "epochs": args.epochs, "clip_mb_full": round(before / 1e6, 3),
           "clip_mb_compact": round(after / 1e6, 3)}
    walls, stores = {}, (("full", store, args.width), ("compact", compact, args.rank))
    timings = {name: [] for name, _, _ in stores}
    for _ in range(args.repeats):  # alternating, so that both stores' runs meet the same machine
        for name, location, _ in stores:
            os.sync()  # the previous run's weights written out first: their writeback would slow this run
            timings[name].append(timed_cv(location, folder / f"run-{name}",
                                          dict(epochs=args.epochs, device=args.device, num_heads=HEADS),
                                          recipe="paper"))
    for name, location, width in stores:
        out, runs = folder / f"run-{name}", timings[name]
        bound = floor(location, out, tokens=args.tokens, width=width, read_s=read_time(location, device),
                      kept_s=read_time(location, device, kept=True))
        params = candidate_steps(out, videos) * parameter_step(args.width, 3, 5, device)
        total = bound["total"] + params
        walls[name] = min(runs)
        print(f"{name:8s}: cv {min(runs):6.1f} s (runs {', '.join(f'{r:.1f}' for r in runs)}); floor {total:6.1f} s "
              f"(token products {bound['matmuls']:.1f} s + reads {bound['reads']:.1f} s + parameter updates "
              f"{params:.1f} s); ratio to it {min(runs) / total:.2f}")
        scale = RAVDESS["videos"] * RAVDESS["clips"] * (RAVDESS["epochs"] + 1) / bound["clip_passes"]
        row |= {f"{name}_cv_s": round(min(runs), 1), f"{name}_median_cv_s": round(float(np.median(runs)), 1),
                f"{name}_floor_s": round(total, 1), f"{name}_params_s": round(params, 1),
                f"{name}_projected_ravdess_h": round(min(runs) * scale / 3600, 2)}
        print(f"{'':10s}projected whole RAVDESS paper protocol (2,880 videos x 8 clips, 20 epochs): "
              f"{min(runs) * scale / 3600:.2f} h here; its floor {total * scale / 3600:.2f} h")
    pairs = [full / compact for full, compact in zip(timings["full"], timings["compact"])]  # runs side by side
    print(f"compact against full: {walls['full'] / walls['compact']:.2f}x faster (best runs); run by run "
          f"{', '.join(f'{p:.2f}' for p in pairs)} (median {np.median(pairs):.2f}x)")
    row |= {"speedup": round(walls["full"] / walls["compact"], 2), "pair_median_speedup": round(np.median(pairs), 2)}
    append_row("probe_compact", row)
    if not args.keep:
        shutil.rmtree(folder)
