"""report.md and confusion PNGs of a run, rebuilt from the run directory's files alone."""

import csv
import json
from pathlib import Path

import numpy as np

from fer_probe.errors import FerProbeError
from fer_probe.metrics import METRIC_KEYS, confusion, paired_bootstrap, uar
from fer_probe.plots import confusion_png


def read_run(run: Path) -> tuple[dict, dict, list[dict], list[str]]:
    for name in ("config.json", "metrics.json", "predictions.csv"):
        if not (run / name).is_file():
            raise FerProbeError(f"{run}: no {name}; pass a run directory written by fer-probe cv or cross")
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    with open(run / "predictions.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        classes = [c[2:] for c in reader.fieldnames if c.startswith("p_")]
    return config, metrics, rows, classes


def per_class_recall(rows: list[dict], classes: list[str], column: str) -> dict[str, float]:
    out = {}
    for name in classes:
        mine = [r for r in rows if r["label"] == name]
        if mine:
            out[name] = sum(r[column] == name for r in mine) / len(mine)
    return out


def write_report(run: str | Path) -> list[Path]:
    run = Path(run)
    config, metrics, rows, classes = read_run(run)
    written = []
    labels = np.array([classes.index(r["label"]) for r in rows], dtype=np.int64)
    preds = {v: np.array([classes.index(r[f"pred_{v}"]) for r in rows], dtype=np.int64) for v in ("pbv", "mv")}
    for vote in ("pbv", "mv"):
        matrix = confusion(labels, preds[vote], len(classes))
        written.append(confusion_png(matrix, classes, run / f"confusion_{vote}.png",
                                     f"{vote.upper()} confusion, rows normalised by true class"))
    probe = config.get("probe", {})
    lines = [f"# {config.get('command', 'run')}: {probe.get('probe')} probe", ""]
    lines += describe_data(config, len(rows))
    lines += ["## Results", "", "| metric | mean ± std | 95% CI (bootstrap over videos) | per fold |",
              "|---|---|---|---|"]
    for key in METRIC_KEYS:
        m = metrics[key]
        lines.append(f"| {key} | {m['mean']:.3f} ± {m['std']:.3f} | [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] | "
                     + " ".join(f"{v:.3f}" for v in m["per_fold"]) + " |")
    lines += ["", "## Per-class recall", "", "| class | PBV | MV |", "|---|---|---|"]
    recall_pbv, recall_mv = per_class_recall(rows, classes, "pred_pbv"), per_class_recall(rows, classes, "pred_mv")
    for name in recall_pbv:
        lines.append(f"| {name} | {recall_pbv[name]:.3f} | {recall_mv[name]:.3f} |")
    test = paired_bootstrap(labels, preds["pbv"], preds["mv"], uar, seed=probe.get("seed", 0))
    lines += ["", "## PBV against MV", "",
              f"UAR(PBV) - UAR(MV) = {test['difference']:+.3f}, 95% CI [{test['ci95'][0]:+.3f}, "
              f"{test['ci95'][1]:+.3f}], paired bootstrap p = {test['p_value']:.3f} over {len(rows)} test videos "
              f"({'distinguishable from' if test['p_value'] < 0.05 else 'not distinguishable from'} noise).", "",
              "![PBV confusion](confusion_pbv.png) ![MV confusion](confusion_mv.png)", ""]
    lines += describe_protocol(config, run)
    path = run / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return [path] + written


def describe_data(config: dict, n_rows: int) -> list[str]:
    probe = config.get("probe", {})
    attrs = config.get("store_attrs", {})
    encoder, sampling = attrs.get("encoder", {}), attrs.get("sampling", {})
    lines = ["## Configuration", ""]
    if config.get("command") == "cross":
        mapping = config.get("mapping", {})
        lines += [f"- trained on `{config['train_store']}` ({mapping.get('trained_on')}), tested on "
                  f"`{config['test_store']}`",
                  f"- label mapping by canonical name, policy **{mapping.get('policy')}**, calm_as_neutral "
                  f"{mapping.get('calm_as_neutral')}; shared classes: {', '.join(mapping.get('shared_classes', []))}",
                  f"- train classes: {', '.join(mapping.get('train_classes', []))}; test classes: "
                  f"{', '.join(mapping.get('test_classes', []))}; {mapping.get('scored_videos')} test videos scored, "
                  f"{mapping.get('excluded_videos')} excluded"]
    else:
        lines += [f"- store `{config.get('store')}` (dataset {attrs.get('dataset')}), {n_rows} test predictions "
                  f"over {config.get('n_folds')} subject-independent folds; "
                  f"{config.get('excluded_videos', 0)} incomplete videos excluded",
                  f"- classes: {', '.join(config.get('classes', []))}"]
    arch = encoder.get("arch") or "custom"
    lines += [f"- encoder: {encoder.get('family')} {arch}, width {encoder.get('embed_dim')}, "
              f"{encoder.get('resolution')} px, checkpoint {encoder.get('checkpoint') or 'random weights (seeded)'}",
              f"- clips: {sampling.get('clips_per_video')} x {sampling.get('frames_per_clip')} frames at step "
              f"{sampling.get('frame_step')}, {sampling.get('spatial_views')} view(s), token grid "
              f"{attrs.get('token_grid')}",
              f"- probe: {probe.get('probe')} (head {probe.get('head')}, {probe.get('num_heads')} attention heads), "
              f"{probe.get('epochs')} epochs, batch {probe.get('batch_size')}, lr {probe.get('lrs')}, weight decay "
              f"{probe.get('weight_decays')}, seed {probe.get('seed')}; training clips: {probe.get('train_clips')}, "
              f"test clips: {probe.get('test_clips')}", ""]
    return lines


def describe_protocol(config: dict, run: Path) -> list[str]:
    lines = ["## Protocol", "", config.get("protocol", ""), "",
             "Training draws cached clips and views; the paper instead re-encodes freshly augmented clips every "
             "epoch (RandAugment, random resized crops), which a cache cannot hold. Compare numbers with that in mind.",
             ""]
    heads_file = run / "heads.json"
    if heads_file.is_file():
        tables = json.loads(heads_file.read_text())
        chosen = [next((h["head"] for h in t["heads"] if h.get("selected")), "?") for t in tables]
        lines += [f"Selected head per fold: {', '.join(chosen)} (all heads' validation scores in heads.json).", ""]
    return lines
