"""Small helpers shared by the benchmarks: timing with device sync, and one CSV row per run."""

import csv
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


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


def append_row(name: str, row: dict) -> Path:
    """Append one row to benchmarks/results/<name>.csv (header written on first use)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    row = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
           "cuda": torch.version.cuda or "", **row}
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
