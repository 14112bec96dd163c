"""UAR (PBV) over seeds on the demo store, for each recipe and trainer schedule: the numbers behind the README's
recipe table and the all-folds trainer's equivalence to the fold-by-fold one (same folds in every run).

python benchmarks/seed_study.py [--store caches/demo.zarr] [--seeds 0,1,2,3,4] [--recipes paper,vjepa]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent.parent))
from fer_probe.config import ProbeConfig
from fer_probe.cv import run_cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="caches/demo.zarr")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--recipes", default="paper,vjepa")
    parser.add_argument("--schedules", default="all-folds,per-fold")
    parser.add_argument("--folds-file", default=None, help="the folds every run uses (default: those of seed 0)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folds_file = args.folds_file
        for recipe in args.recipes.split(","):
            for schedule in args.schedules.split(","):
                scores = results.setdefault((recipe, schedule), [])
                for seed in seeds:
                    cfg = ProbeConfig.from_recipe(recipe, seed=seed, schedule=schedule, device="cpu")
                    out = Path(tmp) / f"{recipe}-{schedule}-{seed}"
                    result = run_cv(args.store, out, cfg, folds_file=folds_file)
                    folds_file = folds_file or str(Path(tmp) / "folds.json")
                    if not Path(folds_file).exists():
                        Path(folds_file).write_text((out / "folds.json").read_text())
                    scores.append(result.metrics["uar_pbv"]["mean"])
                    print(f"{recipe:6s} {schedule:9s} seed {seed}: UAR(PBV) {scores[-1]:.3f}", flush=True)
    print(f"\n{args.store}, seeds {args.seeds}, every run on the same folds:")
    for (recipe, schedule), scores in results.items():
        print(f"{recipe:6s} {schedule:9s}: UAR(PBV) {np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}")
    for recipe in args.recipes.split(","):
        if (recipe, "all-folds") in results and (recipe, "per-fold") in results:
            test = stats.ttest_ind(results[(recipe, "all-folds")], results[(recipe, "per-fold")], equal_var=False)
            print(f"{recipe}: all-folds vs per-fold, Welch t-test p = {test.pvalue:.2f}")


if __name__ == "__main__":
    main()
