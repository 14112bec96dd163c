"""The probe stage on a CUDA machine, after a change to its precision or reading paths: cross-validation in each
precision (bfloat16 autocast, float16 with a gradient scaler, float32) against the CPU's float32 run on the same
folds, the ablation variants trained together, and cross-dataset transfer. Prints one line per check; exit 1 if
one fails. Needs a GPU; a planted store is written here (zarr only). Its posteriors saturate, so they cannot show
bfloat16's rounding: the autocast dtypes are checked directly, and benchmarks/compare_runs_across_trees.py compares
a change's runs with an earlier tree's byte for byte.

python benchmarks/check_cuda_probe.py [--out DIR]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from fer_probe.config import ProbeConfig
from fer_probe.protocols.ablate import run_ablation
from fer_probe.protocols.cross import run_cross
from fer_probe.protocols.cv import run_cv
from tests.helpers import write_planted_store


def check(name: str, ok: bool, detail: str, failures: list[str]) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible", file=sys.stderr)
        return 1
    folder = args.out or Path(tempfile.mkdtemp())
    store = str(write_planted_store(folder / "planted.zarr", signal=0.15, clips=4, views=2, tokens=64, width=128))
    failures: list[str] = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    base = dict(epochs=6, num_heads=4, seed=0)
    started = time.perf_counter()
    cpu = run_cv(store, folder / "cpu", ProbeConfig.from_recipe("paper", device="cpu", **base), n_folds=4)
    cpu_uar = cpu.metrics["uar_pbv"]["mean"]
    print(f"cpu float32: UAR {cpu_uar:.3f} ({time.perf_counter() - started:.1f} s)", flush=True)
    folds = folder / "cpu" / "folds.json"
    for name, dtype in (("auto", torch.bfloat16), ("float16", torch.float16)):
        precision = ProbeConfig(device="cuda", precision=name).resolve_precision()
        with precision.autocast():
            product = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
        check(f"precision {name}", precision.compute == dtype and product.dtype == dtype and
              precision.scaled == (dtype == torch.float16), f"computes in {precision.compute}, autocast gives "
              f"{product.dtype}, gradient scaler {precision.scaled}", failures)
    for precision in ("float32", "auto", "float16"):
        cfg = ProbeConfig.from_recipe("paper", device="cuda", precision=precision, **base)
        started = time.perf_counter()
        result = run_cv(store, folder / f"cuda-{precision}", cfg, n_folds=4, folds_file=folds)
        uar = result.metrics["uar_pbv"]["mean"]
        same = [np.abs(a - b).max() for fa, fb in zip(result.folds, cpu.folds)
                for a, b in zip(fa.clip_posteriors, fb.clip_posteriors)]
        tolerance = 1e-3 if precision == "float32" else 0.15
        check(f"cv cuda {precision}", abs(uar - cpu_uar) <= 0.1 and max(same) <= tolerance,
              f"UAR {uar:.3f} vs cpu {cpu_uar:.3f}, largest posterior difference {max(same):.2e} "
              f"({time.perf_counter() - started:.1f} s)", failures)
    fast = ProbeConfig.from_recipe("fast", device="cuda", **base)
    started = time.perf_counter()
    summary = run_ablation(store, folder / "ablate", fast, n_folds=4)
    uars = {v.variant: round(v.uar_pbv, 3) for v in summary.variants}
    check("ablate cuda (variants from one read)", all(0 <= u <= 1 for u in uars.values()) and len(uars) == 5,
          f"{uars} ({time.perf_counter() - started:.1f} s)", failures)
    other = str(write_planted_store(folder / "other.zarr", signal=0.8, clips=4, views=2, tokens=64, width=128,
                                    n_subjects=3))
    result = run_cross(store, other, folder / "cross", cfg=fast, policy="strict")
    check("cross cuda", result.metrics["uar_pbv"]["mean"] > 0.3, f"UAR {result.metrics['uar_pbv']['mean']:.3f}",
          failures)
    check_compact(store, folder, base, failures)
    print("all passed" if not failures else f"failed: {', '.join(failures)}", flush=True)
    return 1 if failures else 0


def check_compact(store: str, folder: Path, base: dict, failures: list[str]) -> None:
    """A compact store (rank 32 of 128, int8) on CUDA: float32 against the CPU's float32 on the same folds (the
    whole-tensor pooling on coordinates against the CPU's streamed one), and auto (bfloat16) close to it."""
    from fer_cache.store.compaction import CompactRequest, compact_store
    compact = folder / "compact.zarr"
    compact_store(CompactRequest(source=store, out=str(compact), rank=32, dtype="int8", sample_tokens=4000))
    cpu = run_cv(str(compact), folder / "compact-cpu", ProbeConfig.from_recipe("paper", device="cpu", **base),
                 n_folds=4)
    for precision, tolerance in (("float32", 1e-3), ("auto", 0.15)):
        cfg = ProbeConfig.from_recipe("paper", device="cuda", precision=precision, **base)
        started = time.perf_counter()
        result = run_cv(str(compact), folder / f"compact-{precision}", cfg, n_folds=4,
                        folds_file=folder / "compact-cpu" / "folds.json")
        same = max(np.abs(a - b).max() for fa, fb in zip(result.folds, cpu.folds)
                   for a, b in zip(fa.clip_posteriors, fb.clip_posteriors))
        check(f"compact cv cuda {precision}", same <= tolerance, f"UAR {result.metrics['uar_pbv']['mean']:.3f} vs "
              f"cpu {cpu.metrics['uar_pbv']['mean']:.3f}, largest posterior difference {same:.2e} "
              f"({time.perf_counter() - started:.1f} s)", failures)


if __name__ == "__main__":
    sys.exit(main())
