"""The run directory: config.json, folds.json, metrics.json, predictions.csv, confusion CSVs, heads.json, weights."""

import csv
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from fer_probe import __version__
from fer_probe.folds import Fold, save_folds
from fer_probe.metrics import FoldPredictions, confusion


def software() -> dict:
    import sklearn
    import zarr
    return {"fer_probe": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "zarr": zarr.__version__, "scikit-learn": sklearn.__version__,
            "platform": platform.platform()}


def write_config(out: Path, run: dict, cfg) -> None:
    """The resolved configuration of the run, written before any training."""
    payload = {"probe": cfg.as_dict(), **run, "software": software(), "argv": sys.argv}
    (out / "config.json").write_text(json.dumps(payload, indent=1, default=str))


def write_folds(out: Path, folds: list[Fold], seed: int) -> None:
    save_folds(folds, out / "folds.json", seed)


def write_weights(path: Path, head, cfg, class_names: list[str], width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in head.model.state_dict().items()}
    meta = {"probe": cfg.probe, "head": cfg.head, "num_heads": str(cfg.num_heads),
            "num_queries": str(cfg.num_queries), "width": str(width), "classes": json.dumps(class_names),
            "selected_head": head.name, "lr": str(head.lr), "weight_decay": str(head.weight_decay)}
    save_file(state, str(path), metadata=meta)


def write_results(out: Path, folds: list[FoldPredictions], metrics: dict, class_names: list[str],
                  head_tables: list[dict], mapping: dict | None = None) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "heads.json").write_text(json.dumps(head_tables, indent=1))
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fold", "video_id", "subject", "label", "pred_pbv", "pred_mv"]
                        + [f"p_{name}" for name in class_names])
        for fold in folds:
            pred_pbv, pred_mv, posteriors = fold.video_level()
            for i, video_id in enumerate(fold.video_ids):
                writer.writerow([fold.fold, video_id, fold.subjects[i], class_names[fold.labels[i]],
                                 class_names[pred_pbv[i]], class_names[pred_mv[i]]]
                                + [f"{p:.6f}" for p in posteriors[i]])
    labels = np.concatenate([f.labels for f in folds])
    for vote, column in (("pbv", 0), ("mv", 1)):
        preds = np.concatenate([f.video_level()[column] for f in folds])
        matrix = confusion(labels, preds, len(class_names))
        with open(out / f"confusion_{vote}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true\\pred"] + class_names)
            for name, row in zip(class_names, matrix):
                writer.writerow([name] + row.tolist())
    if mapping is not None:
        (out / "mapping.json").write_text(json.dumps(mapping, indent=1))
