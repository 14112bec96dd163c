"""Stage-2 speed at the paper's token shape (4608 tokens x 1280, float16), in one run:
the time to read every clip once; the fast attentive probe against the straightforward cross-attention; and
`fer-probe cv` at the paper's scale of work (5 folds x 4 candidates, 2 lr x 2 wd) with the all-folds trainer
against the fold-by-fold one, each against the time of reading every needed clip once per epoch; the peak memory;
and the projected time of the whole RAVDESS protocol from the measured per-clip figures.

python benchmarks/bench_probe.py [--subjects 10] [--clips 2] [--epochs 2] [--device cpu]
python benchmarks/bench_probe.py --mode floor   # the paper recipe against its bare token matmuls plus reads
python benchmarks/bench_probe.py --mode floor --rank 256 --epochs 4   # full store against its rank-256 compaction
python benchmarks/bench_probe.py --mode disk    # ablate from one read vs one by one, every read from the disk
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import append_row, machine, peak_rss_gb, synthetic_store

from fer_probe.config import ProbeConfig
from fer_probe.data.precision import Precision
from fer_probe.data.reader import CacheReader, ClipRef
from fer_probe.probes import AttentiveProbe, AttentiveSettings
from tests.helpers import straightforward_logits

RAVDESS = {"videos": 2880, "clips": 8, "epochs": 20}  # the paper's protocol: all 8 clips, 20 epochs, 5 folds


def throughput(probe: AttentiveProbe, clips: torch.Tensor, train: bool, repeats: int) -> float:
    """clips/s of forward (+ backward and a fused AdamW step when training) on a batch of clips."""
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3, fused=True)
    labels = torch.zeros(len(clips), dtype=torch.long, device=clips.device)

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
    if clips.is_cuda:
        torch.cuda.synchronize()
    return repeats * len(clips) / (time.perf_counter() - started)


class Straightforward(torch.nn.Module):
    """The probe by the straightforward computation (keys and values of every token), as the tests check against."""

    def __init__(self, probe: AttentiveProbe):
        super().__init__()
        self.probe = probe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return straightforward_logits(self.probe, x)


def read_time(store: Path, device: torch.device, warm: bool = True, direct: bool = True,
              kept: bool = False) -> float | None:
    """Seconds to read one clip view from the store as cv does (the stored float16 as it is: CUDA casts it on the
    device, the CPU's float32 attentive probes widen it a chunk at a time), every clip once, from the page cache (a
    first pass warms it) or, with warm=False, from wherever it is; direct=False reads through zarr's codec pipeline
    instead of straight from the shard files; kept=True decodes it from memory, as cv does with a store that fits its
    default memory budget (None for a store that does not fit)."""
    budget = ProbeConfig().memory_budget_mb if kept else 0
    with CacheReader(store, precision=Precision.resolve("auto", device.type), memory_budget_mb=budget) as reader:
        if not direct:
            reader.store.direct = None
        if kept and not reader.preload():
            return None
        refs = [ClipRef(v, k, 0) for v in range(len(reader)) for k in range(reader.clips)]
        for ref in refs if warm else ():
            reader.clip(ref)
        started = time.perf_counter()
        for ref in refs:
            reader.clip(ref)
        return (time.perf_counter() - started) / len(refs)


def probe_speeds(store: Path, device: torch.device, width: int) -> dict:
    with CacheReader(store) as reader:
        sample = torch.stack([reader.clip(ClipRef(v, 0, 0)) for v in range(8)]).to(device)  # [8, N, D]
    torch.manual_seed(0)
    probe = AttentiveProbe(width, 4, AttentiveSettings(num_heads=16)).to(device)
    speeds = {"fast_train": throughput(probe, sample, True, 3), "fast_eval": throughput(probe, sample, False, 3)}
    slow = Straightforward(probe)
    speeds |= {"slow_train": throughput(slow, sample[:2], True, 1), "slow_eval": throughput(slow, sample, False, 1)}
    return speeds


CV_IN_A_PROCESS = """
import sys, time
from fer_cache.store import tune_process
from fer_probe.config import ProbeConfig
from fer_probe.protocols.cv import run_cv
tune_process()  # as fer-probe does
cfg = ProbeConfig.from_recipe({recipe!r}, **{settings})
started = time.perf_counter()
run_cv({store!r}, {out!r}, cfg, n_folds=5, overwrite=True)
print(time.perf_counter() - started)
"""


def timed_cv(store: Path, out: Path, settings: dict, recipe: str = "fast") -> float:
    """Seconds of one `fer-probe cv` in a fresh process, as a user runs it (a process that trained before would
    reuse memory that a new one must first fault in)."""
    code = CV_IN_A_PROCESS.format(settings=settings, store=str(store), out=str(out), recipe=recipe)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    return float(done.stdout.strip().splitlines()[-1])


def cold_read_time(store: Path, device: torch.device) -> float | None:
    """Seconds to read one clip from disk (the page cache dropped first; needs root), or None."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("1")
    except OSError:
        return None
    return read_time(store, device, warm=False)


def needed_reads(store: Path, cfg: ProbeConfig, out: Path) -> int:
    """Clip reads that the cv protocol needs at least: per epoch one sampled clip of each training video and every
    clip of each validation video, then every clip of each test video once."""
    import json
    with CacheReader(store) as reader:
        videos, clips = len(reader), reader.clips
    heads = json.loads((out / "heads.json").read_text())
    several = len(heads[0]["heads"]) > 1
    val = 0
    if several:  # every fold's validation videos (the inner split cv made), read whole after each epoch
        from fer_cache.labels import canonical_order
        from fer_probe.protocols.folds import fold_indices, inner_split, load_folds
        with CacheReader(store) as reader:
            folds = load_folds(out / "folds.json", reader.subjects, reader.ids)
            names = canonical_order([reader.label_names[i] for i in reader.active_classes()])
            targets = np.array([names.index(reader.label_names[i]) for i in reader.labels])
            union = set()
            for f, fold in enumerate(folds):
                train_idx, _ = fold_indices(reader.subjects, fold, reader.ids)
                union |= set(inner_split(reader.subjects, targets, train_idx, seed=cfg.seed + f)[1].tolist())
            val = len(union) * clips
    return cfg.epochs * (videos + val) + videos * clips


def main() -> None:
    from fer_cache.store import tune_process
    tune_process()  # as the command-line tools do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--videos-per-class", type=int, default=1)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=4608)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="floor mode: fresh-process cv runs per setting, "
                        "the fastest reported against the floor's fastest timings (every run printed)")
    parser.add_argument("--rank", type=int, default=None, help="floor mode: also compact the store to this rank "
                        "(int8) and compare the paper recipe on both")
    parser.add_argument("--keep", default=None, help="folder to keep the store in (default: a temp folder)")
    parser.add_argument("--mode", choices=("scale", "floor", "disk"), default="scale",
                        help="scale: the fast recipe's 5 x 4 candidates and the projection (default); floor: the "
                             "paper recipe against its bare token matmuls plus reads; disk: ablate one-read vs one "
                             "by one with every read from the disk")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.mode == "floor" and args.rank:
        from bench_compact import compact_mode
        compact_mode(args)
        return
    if args.mode == "floor":
        from bench_floor import floor_mode
        floor_mode(args)
        return
    if args.mode == "disk":
        from bench_disk import disk_mode
        disk_mode(args)
        return
    device = torch.device(args.device)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_probe_"))
    store = folder / "paper_shape.zarr"
    if not store.exists():
        synthetic_store(store, subjects=args.subjects, classes=4, per_class=args.videos_per_class, clips=args.clips,
                        tokens=args.tokens, width=args.width)
    read_s, zarr_s = read_time(store, device), read_time(store, device, direct=False)
    clip_mb = args.tokens * args.width * 2 / 1e6
    print(f"store: {args.subjects * 4 * args.videos_per_class} videos x {args.clips} clips of [{args.tokens}, "
          f"{args.width}] float16 ({clip_mb:.1f} MB per clip) on {machine(device)}")
    print(f"read every clip once: {read_s * 1e3:.1f} ms per clip ({clip_mb / read_s:.0f} MB/s) straight from the "
          f"shard files; {zarr_s * 1e3:.1f} ms through zarr's codec pipeline ({zarr_s / read_s:.1f}x)")
    speeds = probe_speeds(store, device, args.width)
    for name, kind in (("fast attentive probe:           ", "fast"), ("straightforward cross-attention:", "slow")):
        print(f"{name} train {speeds[kind + '_train']:7.2f} clips/s, eval {speeds[kind + '_eval']:7.2f}")
    row = {"machine": machine(device), "tokens": args.tokens, "width": args.width,
           "read_ms_per_clip": round(read_s * 1e3, 2), "zarr_read_ms_per_clip": round(zarr_s * 1e3, 2)}
    row |= {f"{k}_clips_per_s": round(v, 2) for k, v in speeds.items()}
    row |= paper_scale(store, folder, args, read_s)
    row["peak_rss_gb"] = round(max(peak_rss_gb(), peak_rss_gb(children=True)), 2)
    print(f"peak resident memory of a cv run: {peak_rss_gb(children=True):.1f} GB (the store is {store_gb(store):.2f} "
          "GB, streamed)")
    append_row("probe", row)
    if not args.keep:
        shutil.rmtree(folder)


def store_gb(store: Path) -> float:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e9


def paper_scale(store: Path, folder: Path, args, read_s: float) -> dict:
    """5 folds x (2 lr x 2 wd) x E epochs, one clip per video per epoch, streaming every read; then 1 candidate per
    fold for the projection of the paper's protocol."""
    grid = dict(epochs=args.epochs, lrs=(1e-3, 3e-4), weight_decays=(0.01, 0.1), device=args.device,
                memory_budget_mb=0, num_heads=16)
    times = {}
    for schedule in ("per-fold", "all-folds"):
        times[schedule] = timed_cv(store, folder / schedule, grid | {"schedule": schedule})
    floor = needed_reads(store, ProbeConfig.from_recipe("fast", **grid), folder / "all-folds") * read_s
    print(f"cv, 5 folds x 4 candidates x {args.epochs} epochs: fold-by-fold {times['per-fold']:.1f} s, all folds in "
          f"one pass {times['all-folds']:.1f} s: {times['per-fold'] / times['all-folds']:.1f}x faster; reading each "
          f"needed clip once per epoch takes {floor:.1f} s: ratios {times['per-fold'] / floor:.1f} and "
          f"{times['all-folds'] / floor:.1f}")
    one = timed_cv(store, folder / "single", dict(epochs=args.epochs, device=args.device, memory_budget_mb=0,
                                                   num_heads=16))
    with CacheReader(store) as reader:
        videos, clips = len(reader), reader.clips
    per_clip = one / (args.epochs * videos + videos * clips)  # one candidate per fold, every clip read once a pass
    projected = per_clip * RAVDESS["videos"] * RAVDESS["clips"] * (RAVDESS["epochs"] + 1)
    cold = cold_read_time(store, torch.device(args.device))
    clips_read = RAVDESS["videos"] * RAVDESS["clips"] * (RAVDESS["epochs"] + 1)
    print(f"one candidate per fold: {one:.1f} s, {per_clip * 1e3:.1f} ms per clip read; projected whole RAVDESS "
          f"paper protocol (2,880 videos, 5 folds, 20 epochs, all 8 clips, then every clip tested): "
          f"{projected / 3600:.1f} h here (reading alone: {read_s * clips_read / 3600:.1f} h from the page cache"
          + (f", {cold * clips_read / 3600:.1f} h from this disk at {cold * 1e3:.0f} ms a clip; a fold-by-fold "
             f"trainer reads 4x as much" if cold else "") + ")")
    return {"cv_per_fold_s": round(times["per-fold"], 1), "cv_all_folds_s": round(times["all-folds"], 1),
            "cv_read_floor_s": round(floor, 1), "cv_speedup": round(times["per-fold"] / times["all-folds"], 2),
            "cv_all_folds_ratio": round(times["all-folds"] / floor, 2),
            "cv_per_fold_ratio": round(times["per-fold"] / floor, 2), "single_candidate_cv_s": round(one, 1),
            "projected_ravdess_hours": round(projected / 3600, 2),
            "cold_read_ms_per_clip": round(cold * 1e3, 1) if cold else ""}


if __name__ == "__main__":
    main()
