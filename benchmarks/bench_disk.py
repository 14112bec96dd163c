"""`fer-probe ablate` when the store exceeds memory (bench_probe.py --mode disk): every read comes from the disk.

The store's pages are dropped from the page cache before the run and each shard file again right after it is read
(posix_fadvise DONTNEED), so no read is ever served from memory, as for a store larger than the machine's memory.
The five ablation variants run as `fer-probe ablate` runs them (all from one read of each clip per epoch) and one by
one (five cross-validations, as before): wall time, bytes read, and the read floor of the one-read
schedule at the disk's own rate (each needed clip read once per epoch, measured cold on the same files).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

SCHEDULE_IN_A_PROCESS = """
import sys, time
sys.path.insert(0, {benchmarks!r})
from bench_disk import run_schedule
print(run_schedule({schedule!r}, {store!r}, {out!r}, {epochs}))
"""


def shard_files(store: Path) -> list[Path]:
    return [p for p in (store / "tokens").rglob("*") if p.is_file() and p.name != "zarr.json"]


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (written pages are flushed first, so all of them go)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cold_rate(store: Path) -> float:
    """Bytes per second of reading every shard file once from the disk, 16 MB at a time."""
    files = shard_files(store)
    for path in files:
        evict(path)
    total, started = 0, time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(16 << 20):
                total += len(chunk)
    return total / (time.perf_counter() - started)


@contextmanager
def reads_from_disk(store: Path):
    """Every shard read of the store comes from the disk; yields a dict counting the bytes read."""
    from fer_cache.store.shards import ShardReader
    for path in shard_files(store):
        evict(path)
    original, counted = ShardReader.read, {"bytes": 0}

    def read(self, row, selection=(), out=None):
        values = original(self, row, selection, out)
        if values is not None:
            counted["bytes"] += values.nbytes
            evict(self.shard_path(row))
        return values
    ShardReader.read = read
    try:
        yield counted
    finally:
        ShardReader.read = original


def run_schedule(schedule: str, store: str, out: str, epochs: int) -> str:
    """One schedule of the paper recipe's ablation in this process: JSON of its wall time and bytes read."""
    from fer_cache.store import tune_process
    from fer_probe.config import ProbeConfig
    from fer_probe.protocols.ablate import run_ablation, variants
    from fer_probe.protocols.cv import run_cv
    tune_process()  # as fer-probe does
    base = ProbeConfig.from_recipe("paper", epochs=epochs, device="cpu", memory_budget_mb=0)
    with reads_from_disk(Path(store)) as counted:
        started = time.perf_counter()
        if schedule == "one-read":
            run_ablation(store, out, base, overwrite=True)
        else:
            folds_file = None
            for name, cfg in variants(base).items():
                run_cv(store, Path(out) / name, cfg, folds_file=folds_file, overwrite=True)
                folds_file = folds_file or Path(out) / name / "folds.json"
        wall = time.perf_counter() - started
    return json.dumps({"wall": wall, "bytes": counted["bytes"]})


def disk_mode(args) -> None:
    """Both schedules, each in a fresh process, against the read floor of the one-read schedule (the paper recipe's
    shape by default: 30 videos x 8 clips of [4608, 1280] float16, 2.8 GB)."""
    from common import append_row, synthetic_store

    from fer_probe.data.reader import CacheReader
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_disk_"))
    store = folder / "paper.zarr"
    if not store.exists():  # 30 videos x 8 clips: 10 subjects x 3 classes
        synthetic_store(store, subjects=10, classes=3, per_class=1, clips=8, tokens=args.tokens, width=args.width)
    with CacheReader(store) as reader:
        videos, clips, views, clip_bytes = len(reader), reader.clips, reader.views, reader.clip_bytes
    rate = cold_rate(store)
    # one read per needed clip: every epoch each video's clips of one view, and the test pass (every clip view,
    # which also gives the linear probe its features)
    floor_bytes = (args.epochs * videos * clips + videos * clips * views) * clip_bytes
    print(f"ablate (5 variants, paper recipe, {args.epochs} epochs) on {videos} videos x {clips} clips of "
          f"[{args.tokens}, {args.width}] float16 read from the disk at {rate / 1e6:.0f} MB/s (cold, page cache "
          f"bypassed); read floor {floor_bytes / 1e6:.1f} MB = {floor_bytes / rate:.1f} s")
    row = {"disk_mb_s": round(rate / 1e6), "read_floor_s": round(floor_bytes / rate, 1)}
    benchmarks = str(Path(__file__).parent)
    for schedule in ("one-read", "one-by-one"):
        code = SCHEDULE_IN_A_PROCESS.format(benchmarks=benchmarks, schedule=schedule, store=str(store),
                                            out=str(folder / schedule), epochs=args.epochs)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent.parent)
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{schedule:10s}: {measured['wall']:6.1f} s, {measured['bytes'] / 1e6:8.1f} MB read from the disk "
              f"({measured['bytes'] / floor_bytes:.2f}x the floor's bytes), "
              f"{measured['wall'] / (floor_bytes / rate):.1f}x the read floor's time")
        row |= {f"{schedule}_s": round(measured["wall"], 1), f"{schedule}_gb": round(measured["bytes"] / 1e9, 3)}
    append_row("probe_disk", row)
    if not args.keep:
        shutil.rmtree(folder)
