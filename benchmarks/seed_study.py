"""UAR (PBV) over seeds on the demo store, for each recipe and trainer schedule: the numbers behind the README's
recipe table and the all-folds trainer's equivalence to the fold-by-fold one (same folds in every run).

python benchmarks/seed_study.py [--store caches/demo.zarr] [--seeds 0,1,2,3,4] [--recipes paper,vjepa]
python benchmarks/seed_study.py --ablation   # fer-probe ablate from one read against its variants one by one
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent.parent))
from fer_probe.config import ProbeConfig
from fer_probe.protocols.cv import run_cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="caches/demo.zarr")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--recipes", default="paper,vjepa")
    parser.add_argument("--schedules", default="all-folds,per-fold")
    parser.add_argument("--folds-file", default=None, help="the folds every run uses (default: those of seed 0)")
    parser.add_argument("--ablation", action="store_true",
                        help="the paper recipe's ablation variants: from one read (ablate) and one by one")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.ablation:
        ablation_study(args.store, seeds)
        return
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


def ablation_study(store: str, seeds: list[int]) -> None:
    """Per seed and variant, the pooled UAR (PBV) that `fer-probe ablate` reports, and that of the same variant run
    on its own on the same folds: trained from one read they must agree within seed noise."""
    from fer_probe.protocols.ablate import run_ablation, variants, video_predictions
    from fer_probe.results.metrics import uar
    together: dict[str, list[float]] = {}
    alone: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            base = ProbeConfig.from_recipe("paper", seed=seed, device="cpu")
            summary = run_ablation(store, Path(tmp) / f"ablate-{seed}", base)
            for row in summary.variants:
                together.setdefault(row.variant, []).append(row.uar_pbv)
            folds_file = Path(tmp) / f"ablate-{seed}" / "attentive" / "folds.json"
            for name, cfg in variants(base).items():
                result = run_cv(store, Path(tmp) / f"alone-{seed}" / name, cfg, folds_file=folds_file)
                _, labels, preds = video_predictions(result, "pbv")
                alone.setdefault(name, []).append(uar(labels, preds))
                print(f"seed {seed} {name:30s}: ablate {together[name][-1]:.3f}, alone {alone[name][-1]:.3f}",
                      flush=True)
    print(f"\n{store}, seeds {seeds}, pooled UAR (PBV), mean ± sd over seeds; |difference| per seed at most:")
    for name in alone:
        largest = max(abs(a - b) for a, b in zip(together[name], alone[name]))
        print(f"{name:30s}: ablate {np.mean(together[name]):.3f} ± {np.std(together[name], ddof=1):.3f}, alone "
              f"{np.mean(alone[name]):.3f} ± {np.std(alone[name], ddof=1):.3f}; {largest:.3f}")


if __name__ == "__main__":
    main()
