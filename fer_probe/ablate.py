"""The ablations readers of the paper ask for next, from one cache, on the same folds, with paired bootstraps."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fer_probe.cv import run_cv
from fer_probe.metrics import paired_bootstrap, uar
from fer_probe.train import ProbeConfig

VARIANTS = {  # name -> overrides of the baseline (attentive, one random training clip, every test clip)
    "attentive": {},
    "linear": {"probe": "linear"},
    "attentive-test-one-clip": {"test_clips": "one"},
    "attentive-train-all-clips": {"train_clips": "all"},
}
COMPARISONS = [  # (question, A, B, vote A, vote B)
    ("probe type", "attentive", "linear", "pbv", "pbv"),
    ("clips at test time", "attentive", "attentive-test-one-clip", "pbv", "pbv"),
    ("voting", "attentive", "attentive", "pbv", "mv"),
    ("training clips", "attentive-train-all-clips", "attentive", "pbv", "pbv"),
]


def video_predictions(result, vote: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids, labels, preds = [], [], []
    for fold in result.folds:
        pred_pbv, pred_mv, _ = fold.video_level()
        ids += fold.video_ids
        labels.append(fold.labels)
        preds.append(pred_pbv if vote == "pbv" else pred_mv)
    return ids, np.concatenate(labels), np.concatenate(preds)


def run_ablation(store: str, out: str | Path, n_folds: int = 5, epochs: int = 20, seed: int = 0,
                 device: str = "auto", batch_size: int = 8, allow_incomplete: bool = False,
                 on_progress=None) -> list[dict]:
    """Each variant is a full cross-validation run in out/<variant>, all on the first run's folds."""
    out = Path(out)
    base = ProbeConfig(epochs=epochs, seed=seed, device=device, batch_size=batch_size)
    results, folds_file = {}, None
    for name, overrides in VARIANTS.items():
        results[name] = run_cv(store, out / name, replace(base, **overrides), n_folds, folds_file, allow_incomplete,
                               on_progress)
        folds_file = folds_file or out / name / "folds.json"
    rows = []
    for question, a, b, vote_a, vote_b in COMPARISONS:
        ids_a, labels, pred_a = video_predictions(results[a], vote_a)
        ids_b, labels_b, pred_b = video_predictions(results[b], vote_b)
        order = {v: i for i, v in enumerate(ids_b)}
        pred_b = pred_b[[order[v] for v in ids_a]]  # the same videos in the same order
        test = paired_bootstrap(labels, pred_a, pred_b, uar, seed=seed)
        rows.append({"comparison": question, "a": f"{a} ({vote_a.upper()})", "b": f"{b} ({vote_b.upper()})",
                     "uar_a": uar(labels, pred_a), "uar_b": uar(labels, pred_b), **test,
                     "distinguishable": test["p_value"] < 0.05})
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Ablations", "", f"Store `{store}`, {n_folds} subject-independent folds shared by every variant, "
             f"{epochs} epochs, seed {seed}. UAR over all test videos pooled across folds (so the baseline differs "
             "slightly from cv's mean of per-fold UARs); paired bootstrap over the same test videos (1000 resamples).",
             "",
             "| comparison | A | B | UAR A | UAR B | A - B [95% CI] | p | distinguishable from noise |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['comparison']} | {r['a']} | {r['b']} | {r['uar_a']:.3f} | {r['uar_b']:.3f} | "
                     f"{r['difference']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {r['p_value']:.3f} | "
                     f"{'yes' if r['distinguishable'] else 'no'} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    return rows
