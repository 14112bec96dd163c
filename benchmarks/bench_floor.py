"""The paper recipe against its physical floor, measured in one run (bench_probe.py --mode floor).

The floor of an exact attentive-probe schedule is its bare token matmuls plus reading each needed clip once. With
the fast exact attention, a training clip costs four [N, D] x [D, M]-shaped products (the scores, the pooled values,
and their two gradients), where M stacks the score columns (queries x heads) of every candidate that trains on the
clip; a scored clip costs the two forward products. The floor times those products as plain float32 torch matmuls
on this machine, counts them for the protocol cv runs, and adds the reads; the ratio is cv's wall time over it.

Both sides are the best of repeated runs: the floor's products the fastest of five timings each, the cv the fastest
of --repeats fresh processes (3). On the project's machine a fresh page costs 0.1-1.5 s a GB to fault in, depending
on what the host did with it, and a cv faults in about 2.7 GB: single runs of the same cv spread by +-15%.
"""

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_probe import RAVDESS, read_time, timed_cv
from common import append_row, machine, synthetic_store

from fer_probe.data.reader import CacheReader

HEADS = 16  # the probe's heads at ViT-H width, one query: M = 16 score columns per candidate


def clip_matmuls(tokens: int, width: int, columns: int, repeats: int = 20) -> tuple[float, float]:
    """Seconds of one clip's (two forward, two backward) products for M = columns, float32."""
    x, w = torch.randn(tokens, width), torch.randn(width, columns)  # [N, D], [D, M]
    p, g = torch.randn(columns, tokens), torch.randn(tokens, columns)  # [M, N], [N, M]

    def timed(fn) -> float:  # the fastest of the repeats: the floor is what this machine can do at best
        fn()
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - started)
        return best
    forward = timed(lambda: x @ w) + timed(lambda: p @ x)  # scores [N, M]; pooled [M, D]
    backward = timed(lambda: g @ w.T) + timed(lambda: x.T @ g)  # d tokens [N, D]; d columns [D, M]
    return forward, backward


def validation_videos(store: Path, run: Path, seed: int) -> list[int]:
    """Per fold, the inner validation videos cv chose its candidates on (none with one candidate)."""
    from fer_cache.labels import canonical_order
    from fer_probe.protocols.folds import fold_indices, inner_split, load_folds
    with CacheReader(store) as reader:
        folds = load_folds(run / "folds.json", reader.subjects, reader.ids)
        names = canonical_order([reader.label_names[i] for i in reader.active_classes()])
        targets = np.array([names.index(reader.label_names[i]) for i in reader.labels])
        return [len(inner_split(reader.subjects, targets, fold_indices(reader.subjects, fold, reader.ids)[0],
                                seed=seed + f)[1]) for f, fold in enumerate(folds)]


def floor(store: Path, run: Path, *, tokens: int, width: int, read_s: float, kept_s: float | None = None) -> dict:
    """The protocol's bare matmuls and reads, from the run's own config and folds. kept_s: seconds to decode one
    clip from memory, for a store that the run keeps there (read once, then decoded at every use)."""
    probe = json.loads((run / "config.json").read_text())["probe"]
    epochs, candidates = probe["epochs"], len(probe["lrs"]) * len(probe["weight_decays"])
    with CacheReader(store) as reader:
        videos, clips, views = len(reader), reader.clips, reader.views
    folds = len(json.loads((run / "folds.json").read_text())["folds"])
    # every epoch each video trains (all its clips of one view) the candidates of the folds it is not tested in
    forward, backward = clip_matmuls(tokens, width, (folds - 1) * candidates * HEADS)
    train = epochs * videos * clips * (forward + backward)
    test = videos * clips * views * clip_matmuls(tokens, width, HEADS)[0]  # by its fold's chosen candidate
    val_videos = validation_videos(store, run, probe["seed"]) if candidates > 1 else []
    val = sum(val_videos) * clips * views * clip_matmuls(tokens, width, candidates * HEADS)[0]  # after the last epoch
    uses = epochs * videos * clips + sum(val_videos) * clips * views + videos * clips * views
    reads = uses * read_s if kept_s is None else videos * clips * views * read_s + uses * kept_s
    matmuls = train + test + val
    return {"matmuls": matmuls, "reads": reads, "total": matmuls + reads,
            "clip_passes": epochs * videos * clips + videos * clips * views}


def floor_mode(args) -> None:
    """The paper recipe (all clips concatenated, batch 4, reference init, cosine schedules) at the paper's token
    shape in float16, 5 subject folds, one candidate per fold and a 2 lr x 2 wd grid: wall time, floor, ratio."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_floor_"))
    store = folder / "paper.zarr"
    if not store.exists():  # 30 videos x 8 clips: 10 subjects x 3 classes
        synthetic_store(store, subjects=10, classes=3, per_class=1, clips=8, tokens=args.tokens, width=args.width)
    read_s = read_time(store, device)
    with CacheReader(store) as reader:
        videos, clips = len(reader), reader.clips
    print(f"paper recipe, {videos} videos x {clips} clips of [{args.tokens}, {args.width}] float16, 5 subject "
          f"folds, {args.epochs} epochs, on {machine(device)}; reads {read_s * 1e3:.1f} ms a clip (page cache)")
    row = {"machine": machine(device), "tokens": args.tokens, "width": args.width, "videos": videos}
    grids = (("one candidate per fold", "single", {}),
             ("2 lr x 2 wd per fold", "grid", {"lrs": (1e-3, 3e-4), "weight_decays": (0.01, 0.1)}))
    for name, key, settings in grids:
        out = folder / key
        walls = [timed_cv(store, out, dict(epochs=args.epochs, device=args.device, num_heads=HEADS) | settings,
                          recipe="paper") for _ in range(args.repeats)]
        wall = min(walls)
        bound = floor(store, out, tokens=args.tokens, width=args.width, read_s=read_s)
        median_ratio = float(np.median(walls)) / bound["total"]
        runs = ", ".join(f"{w:.1f}" for w in walls)
        print(f"{name:24s}: cv {wall:6.1f} s (runs {runs}); floor {bound['total']:6.1f} s (token matmuls "
              f"{bound['matmuls']:.1f} s + reads {bound['reads']:.1f} s); ratio {wall / bound['total']:.2f} (median "
              f"run {median_ratio:.2f})")
        row |= {f"{key}_cv_s": round(wall, 1), f"{key}_floor_s": round(bound["total"], 1),
                f"{key}_ratio": round(wall / bound["total"], 2), f"{key}_median_ratio": round(median_ratio, 2)}
        if key == "single":
            scale = RAVDESS["videos"] * RAVDESS["clips"] * (RAVDESS["epochs"] + 1) / bound["clip_passes"]
            print(f"projected whole RAVDESS paper protocol (2,880 videos x 8 clips, 5 folds, 20 epochs, every clip "
                  f"tested): {wall * scale / 3600:.1f} h here; its floor {bound['total'] * scale / 3600:.1f} h")
            row["projected_ravdess_hours"] = round(wall * scale / 3600, 2)
            fast = min(timed_cv(store, folder / "bfloat16", dict(epochs=args.epochs, device=args.device,
                                                                num_heads=HEADS, precision="bfloat16"), recipe="paper")
                       for _ in range(args.repeats))
            print(f"{'  the same in bfloat16':24s}: cv {fast:6.1f} s (--precision bfloat16: token matmuls in "
                  f"bfloat16, not exact); {fast / bound['total']:.2f}x the float32 floor")
            row["single_bfloat16_cv_s"] = round(fast, 1)
    append_row("probe_floor", row)
    if not args.keep:
        shutil.rmtree(folder)
