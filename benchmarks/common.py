"""Small helpers shared by the benchmarks: timing with device sync, one CSV row per run, peak memory, and a synthetic
store written by fer_cache's own writer."""

import csv
import os
import platform
import resource
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(os.environ.get("FER_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests write elsewhere


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call after warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - started) / iters


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def peak_rss_gb(children: bool = False) -> float:
    """Peak resident memory of this process (or of the largest child process that ended) so far, in GB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1e6  # Linux reports kB


def code_version() -> str:
    """The commit the benchmark ran, with "+edits" where the working tree differs from it ("" outside git), so that
    a row of results names the code that made it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=RESULTS.parent, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""
    try:
        commit = git("rev-parse", "--short", "HEAD")
        edited = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)benchmarks/results")
        return commit and commit + ("+edits" if edited else "")
    except OSError:  # no git here
        return ""


def append_row(name: str, row: dict) -> Path:
    """Append one row to benchmarks/results/<name>.csv (header written on first use)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    row = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
           "cuda": torch.version.cuda or "", "commit": code_version(), **row}
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    fields = list(dict.fromkeys([k for r in rows for k in r] + list(row)))  # columns of old and new rows
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows + [row])
    return path


def synthetic_store(path: Path, *, subjects: int, classes: int, per_class: int, clips: int, tokens: int, width: int,
                    signal: float = 0.3, seed: int = 0) -> Path:
    """A done store of random tokens with a class signal, written through fer_cache.store (float16, sharded)."""
    from fer_cache.inputs.datasets import VideoItem
    from fer_cache.labels import CANONICAL_LABELS
    from fer_cache.store import schema, tune_process, writing

    rng = np.random.default_rng(seed)
    names = [CANONICAL_LABELS[i] for i in (0, 2, 3, 4, 5, 6)][:classes]
    videos = [VideoItem(id=f"s{s}_c{c}_r{r}", path=f"s{s}/{c}_{r}.mp4", label=CANONICAL_LABELS.index(names[c]),
                        label_name=names[c],
                        subject=str(s + 1)) for s in range(subjects) for c in range(classes) for r in range(per_class)]
    encoder = {"family": "synthetic", "embed_dim": width, "num_heads": 16}
    sampling, storage, grid = {"clips_per_video": clips, "spatial_views": 1}, {"dtype": "float16"}, [1, 1, tokens]
    attrs = schema.store_attrs(dataset="synthetic", label_names=list(CANONICAL_LABELS), encoder=encoder,
                               sampling=sampling, storage=storage, token_grid=grid)
    tune_process()
    layout = schema.Layout(videos=len(videos), clips=clips, views=1, tokens=tokens, width=width, frames_per_clip=4)
    store = writing.create_store(path, layout, videos, attrs=attrs)
    directions = rng.standard_normal((classes, width)).astype(np.float32)
    for row, video in enumerate(videos):
        values = rng.standard_normal((clips, 1, tokens, width), dtype=np.float32)
        values += signal * directions[names.index(video.label_name)]
        writing.write_video(store, row, values, frame_index=np.zeros((clips, 4), np.int32), n_frames=64)
    os.sync()  # settled on disk, as a user's store is: no write-back of its pages competes with what is timed next
    return path
