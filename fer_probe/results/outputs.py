"""The run directory: config.json, folds.json, metrics.json, predictions.csv, confusion CSVs, heads.json,
train_log.csv, warnings.json and weights. A run owns these files; rerunning into a run directory replaces them all."""

import csv
import json
import os
import platform
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from fer_cache.store.shards import write_file
from fer_probe import __version__
from fer_probe.errors import FerProbeError, RunDirectoryError
from fer_probe.protocols.folds import Fold, save_folds
from fer_probe.results.metrics import FoldPredictions, confusion

RUN_FILES = ("config.json", "folds.json", "metrics.json", "predictions.csv", "heads.json", "mapping.json",
             "confusion_pbv.csv", "confusion_mv.csv", "train_log.csv", "warnings.json", "report.md")
RUN_GLOBS = ("*.png",)
RUN_FOLDERS = ("weights",)


def is_run_dir(path: Path) -> bool:
    try:
        return "command" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """An empty or new folder for a run. A non-empty one is refused unless overwrite, which first removes every
    file a run writes (other files and subfolders, e.g. runs nested inside, are kept)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FerProbeError(f"{out} is a file; the run directory must be a folder (choose another output)")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunDirectoryError(f"{out} is not empty; replace its run files or choose another run directory")
        if not is_run_dir(out):
            raise FerProbeError(f"{out} is not empty and is not a fer-probe run directory (no config.json of a "
                                "run); nothing was removed: choose another run directory")
        clear_run(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FerProbeError(f"cannot create the run directory {out}: {exc.strerror or exc}") from exc
    return out


def clear_run(out: Path) -> None:
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for pattern in RUN_GLOBS:
        for path in out.glob(pattern):
            path.unlink()
    for name in RUN_FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def software() -> dict:
    import sklearn
    import zarr
    return {"fer_probe": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "zarr": zarr.__version__, "scikit-learn": sklearn.__version__,
            "platform": platform.platform()}


def write_config(out: Path, run: dict, cfg) -> None:
    """The resolved configuration of the run, written before any training, with the settings its probe is built
    with (Probe.Settings), which the report shows."""
    from fer_probe.probes.registry import registered

    kind = registered(cfg.probe)
    settings = asdict(kind.settings_from(cfg))
    payload = {"probe": cfg.as_dict(), "probe_settings": settings, **run, "software": software(), "argv": sys.argv}
    (out / "config.json").write_text(json.dumps(payload, indent=1, default=str))


def write_folds(out: Path, folds: list[Fold], seed: int) -> None:
    save_folds(folds, out / "folds.json", seed)


@contextmanager
def writing(out: Path, what: str, *, kept: str = "no results were kept"):
    """A full disk or a file-size limit while writing results: one line that says what was lost and what was kept."""
    try:
        yield
    except Exception as exc:  # OSError, and safetensors' own error type for the same failures
        if isinstance(exc, FerProbeError):
            raise
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FerProbeError(f"training finished but {what} could not be written to {out} ({reason}); {kept}; free "
                            "space or raise the file-size limit, then rerun with --overwrite") from exc


def write_weights(path: Path, candidate, cfg, *, class_names: list[str], width: int) -> None:
    """The chosen probe's weights; its name and settings in the metadata, so that it can be rebuilt alone
    (read_probe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in candidate.model.state_dict().items()}
    meta = {"probe": cfg.probe, "settings": json.dumps(candidate.model.settings_dict()),
            "head": cfg.head, "num_heads": str(cfg.num_heads), "num_queries": str(cfg.num_queries),
            "use_proj": str(cfg.use_proj), "recipe": cfg.recipe,
            "width": str(width), "classes": json.dumps(class_names), "selected_head": candidate.name,
            "lr": str(candidate.lr), "weight_decay": str(candidate.weight_decay)}
    write_file(path, save(state, metadata=meta))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # written 0644 past the page cache; weights are ordinary results


def write_results(out: Path, folds: list[FoldPredictions], metrics: dict, *, class_names: list[str],
                  candidate_tables: list[dict], mapping: dict | None = None) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "heads.json").write_text(json.dumps(candidate_tables, indent=1))  # named before candidates were
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


def write_train_log(out: Path, log: list[dict]) -> None:
    """train_log.csv: per epoch, fold and candidate the mean training loss and accuracy (and validation UAR)."""
    columns = ["epoch", "fold", "head", "train_loss", "train_accuracy", "val_uar_pbv"]
    with open(out / "train_log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in log:
            writer.writerow({k: ("" if row.get(k) is None else
                                 f"{row[k]:.6f}" if isinstance(row[k], float) else row[k]) for k in columns})


def read_probe(path: Path):
    """A probe saved by write_weights, rebuilt with its settings and weights, in eval mode; and its metadata. A file
    that is not such a probe is refused in one line naming it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from fer_probe.probes.registry import registered

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        kind = registered(meta["probe"])
        if "settings" in meta:
            settings = kind.make_settings(**json.loads(meta["settings"]))
        else:  # weights written before the settings were saved whole
            settings = kind.settings_from({"head": meta.get("head"), "num_heads": int(meta.get("num_heads") or 16),
                                           "num_queries": int(meta.get("num_queries") or 1),
                                           "use_proj": meta.get("use_proj") == "True"})
        probe = kind.build(int(meta["width"]), len(json.loads(meta["classes"])), settings)
        probe.load_state_dict(load_file(str(path)))
    except FerProbeError as exc:
        raise FerProbeError(f"{path}: {exc}") from exc
    except Exception as exc:  # safetensors' own error, a missing key, bad JSON: the file is not ours
        raise FerProbeError(f"{path}: not probe weights written by fer-probe ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); rerun the fer-probe command "
                            "that wrote it") from exc
    return probe.eval(), meta


def write_warnings(out: Path, warnings: list[str]) -> None:
    (out / "warnings.json").write_text(json.dumps(warnings, indent=1))
