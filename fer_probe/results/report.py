"""report.md and its figures, rebuilt from the run directory's files alone."""

import csv
import json
from pathlib import Path

import numpy as np

from fer_probe.errors import FerProbeError
from fer_probe.results.metrics import METRIC_KEYS, confusion, distinguishable, p_text, paired_bootstrap, uar
from fer_probe.results.plots import confusion_png, curves_png, written_whole
from fer_probe.results.report_tables import compact_text, fold_table, paper_table, words

PREDICTION_COLUMNS = ("fold", "video_id", "subject", "label", "pred_pbv", "pred_mv")


def read_run(run: Path) -> tuple[dict, dict, list[dict], list[str]]:
    if not run.is_dir():
        raise FerProbeError(f"{run}: no such directory; pass a run directory written by fer-probe cv or cross")
    if (run / "ablation.md").is_file() and not (run / "config.json").is_file():
        raise FerProbeError(f"{run} is an ablation: read {run / 'ablation.md'}, or report one of its variants' run "
                            "directories (its subfolders)")
    if (run / "config.json").is_file() and not (run / "metrics.json").is_file():
        raise FerProbeError(f"{run}: the run is incomplete (it stopped before metrics.json was written); rerun its "
                            "fer-probe command with --overwrite")
    for name in ("config.json", "metrics.json", "predictions.csv"):
        if not (run / name).is_file():
            raise FerProbeError(f"{run}: no {name}; pass a run directory written by fer-probe cv or cross")
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    with open(run / "predictions.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    missing = [c for c in PREDICTION_COLUMNS if c not in columns]
    if missing or not any(c.startswith("p_") for c in columns):
        raise FerProbeError(f"{run / 'predictions.csv'} lacks the column {missing[0] if missing else 'p_<class>'}; "
                            "it is not a fer-probe predictions file (rerun the run's command with --overwrite)")
    return config, metrics, rows, [c[2:] for c in columns if c.startswith("p_")]


def read_optional(run: Path, name: str, default):
    path = run / name
    if not path.is_file():
        return default
    if name.endswith(".csv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return json.loads(path.read_text())


def per_class_recall(rows: list[dict], classes: list[str], column: str) -> dict[str, float]:
    out = {}
    for name in classes:
        mine = [r for r in rows if r["label"] == name]
        if mine:
            out[name] = sum(r[column] == name for r in mine) / len(mine)
    return out


def write_report(run: str | Path) -> list[Path]:
    """report.md, confusion_{pbv,mv}.png and (with a train_log.csv) training_curves.png of a run."""
    run = Path(run)
    config, metrics, rows, classes = read_run(run)
    probe = config.get("probe", {})
    cross = config.get("command") == "cross"
    labels = np.array([classes.index(r["label"]) for r in rows], dtype=np.int64)
    preds = {v: np.array([classes.index(r[f"pred_{v}"]) for r in rows], dtype=np.int64) for v in ("pbv", "mv")}
    dataset = config.get("store_attrs", {}).get("dataset", "?")
    written = []
    pooled = "" if cross else " pooled over all test videos (the report's is the mean of the folds' UARs)"
    for vote in ("pbv", "mv"):
        title = (f"{run.name}: {dataset}{' -> ' + Path(config['test_store']).name if cross else ''}, "
                 f"{probe.get('probe')} probe ({probe.get('recipe')})\nUAR({vote.upper()}) "
                 f"{uar(labels, preds[vote]):.3f}{pooled}; {vote.upper()} confusion, rows normalised by true class")
        written.append(confusion_png(confusion(labels, preds[vote], len(classes)), classes,
                                     run / f"confusion_{vote}.png", title=title))
    log = read_optional(run, "train_log.csv", [])
    if log:
        written.append(curves_png(log, run / "training_curves.png",
                                  f"{run.name}: training curves ({probe.get('probe')}, recipe {probe.get('recipe')})",
                                  chance=1 / max(len(classes), 1)))
    lines = [f"# {config.get('command', 'run')}: {probe.get('probe')} probe, recipe {probe.get('recipe')}", ""]
    lines += warnings_section(read_optional(run, "warnings.json", []))
    lines += describe_data(config, len(rows))
    single = one_posterior(config)
    lines += results_section(metrics, labels, cross, single=single)
    lines += recall_section(rows, classes)
    if not cross:
        lines += ["## Folds", ""] + fold_table(rows, classes, read_optional(run, "folds.json", {}),
                                               heads=read_optional(run, "heads.json", [])) + [""]
    lines += [] if single else pbv_vs_mv(labels, preds, probe.get("seed", 0))
    if log:
        lines += ["## Training curves", "", "Mean training loss and accuracy per epoch (and inner-validation UAR "
                  f"where candidates were chosen), one line per {'candidate' if cross else 'fold'}; the data are in "
                  "train_log.csv.", "",
                  "![training curves](training_curves.png)", ""]
    lines += ["## This run and the paper", ""] + paper_table(config) + [""]
    lines += describe_protocol(config, run)
    lines += figures_section(run, written)
    path = run / "report.md"
    written_whole(path, lambda partial: partial.write_text("\n".join(lines) + "\n"))
    return [path] + written


def warnings_section(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    return ["## Warnings", ""] + [f"- **{w}**" for w in warnings] + [""]


def one_posterior(config: dict) -> str | None:
    """Why each test video has one posterior (so MV and clip-level metrics are PBV's by construction), or None:
    scored on one clip, or trained on all clips concatenated and scored in one pass over a store of one view."""
    probe = config.get("probe", {})
    views = config.get("store_attrs", {}).get("sampling", {}).get("spatial_views", 1)
    if probe.get("test_clips") == "one":
        return "each test video is scored on one clip"
    if probe.get("train_clips") == "all" and probe.get("test_clips") != "each" and views == 1 \
            and config.get("command") != "cross":
        return "each test video is scored in one pass over its concatenated clips, in one view"
    return None


def results_section(metrics: dict, labels: np.ndarray, cross: bool, *, single: str | None = None) -> list[str]:
    chance = 1 / len(np.unique(labels))
    lines = ["## Results", "", f"Chance level: UAR {chance:.3f} ({len(np.unique(labels))} classes among the test "
             "videos): the UAR of a constant prediction, or of guessing, is 1 / the number of test classes"
             + (", whatever the classes the probe was trained on" if cross else "") + ".", ""]
    if single:
        lines += [f"MV and clip-level metrics are identical to PBV by construction here ({single}: one posterior per "
                  "video, nothing to vote over); only PBV is shown (metrics.json holds all six).", ""]
    keys = [k for k in METRIC_KEYS if not single or k.endswith("_pbv")]
    if cross:
        lines += ["| metric | value | 95% CI (bootstrap over test videos) |", "|---|---|---|"]
        for key in keys:
            m = metrics[key]
            lines.append(f"| {key} | {m['mean']:.3f} | [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] |")
    else:
        lines += ["| metric | mean ± std over folds | 95% CI (bootstrap over videos) | per fold |", "|---|---|---|---|"]
        for key in keys:
            m = metrics[key]
            lines.append(f"| {key} | {m['mean']:.3f} ± {m['std']:.3f} | [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] | "
                         + " ".join(f"{v:.3f}" for v in m["per_fold"]) + " |")
    return lines + [""]


def recall_section(rows: list[dict], classes: list[str]) -> list[str]:
    lines = ["## Per-class recall", "", "| class | test videos | PBV | MV |", "|---|---|---|---|"]
    recall_pbv, recall_mv = per_class_recall(rows, classes, "pred_pbv"), per_class_recall(rows, classes, "pred_mv")
    for name in classes:
        count = sum(r["label"] == name for r in rows)
        if name in recall_pbv:
            lines.append(f"| {name} | {count} | {recall_pbv[name]:.3f} | {recall_mv[name]:.3f} |")
        else:
            lines.append(f"| {name} | 0 | - | - |")
    return lines + [""]


def pbv_vs_mv(labels: np.ndarray, preds: dict, seed: int) -> list[str]:
    test = paired_bootstrap(labels, preds["pbv"], preds["mv"], metric=uar, seed=seed)
    verdict = "distinguishable from" if distinguishable(test["p_value"]) else "not distinguishable from"
    return ["## PBV against MV", "",
            f"UAR(PBV) - UAR(MV) = {test['difference']:+.3f}, 95% CI [{test['ci95'][0]:+.3f}, "
            f"{test['ci95'][1]:+.3f}], paired bootstrap p {p_text(test['p_value'], relation=True)} over "
            f"{len(labels)} test videos ({verdict} noise).", ""]


def describe_data(config: dict, n_rows: int) -> list[str]:
    probe = config.get("probe", {})
    attrs = config.get("store_attrs", {})
    encoder, sampling = attrs.get("encoder", {}), attrs.get("sampling", {})
    lines = ["## Configuration", ""]
    if config.get("command") == "cross":
        mapping = config.get("mapping", {})
        lines += [f"- trained on `{config['train_store']}` ({mapping.get('trained_on')}), tested on "
                  f"`{config['test_store']}`",
                  f"- label mapping by canonical name, policy **{mapping.get('policy')}**, RAVDESS calm as neutral: "
                  f"{words(mapping.get('calm_as_neutral'))}; shared classes: "
                  f"{', '.join(mapping.get('shared_classes', []))}",
                  f"- train classes: {', '.join(mapping.get('train_classes', []))}; test classes: "
                  f"{', '.join(mapping.get('test_classes', []))}; {mapping.get('scored_videos')} test videos scored, "
                  f"{mapping.get('excluded_videos')} excluded by the policy"]
    else:
        folds = "official folds of the dataset (by clip)" if config.get("folds") == "official" else \
            "subject-independent folds"
        lines += [f"- store `{config.get('store')}` (dataset {attrs.get('dataset')}), {n_rows} test predictions "
                  f"over {config.get('n_folds')} {folds}; {config.get('excluded_videos', 0)} incomplete videos "
                  "excluded",
                  f"- classes: {', '.join(config.get('classes', []))}"]
        if config.get("test_store"):
            lines.append(f"- trained on `{config.get('store')}`'s clips, tested on `{config['test_store']}`'s (the "
                         "same videos and encoder, another sampling)")
    arch = encoder.get("arch") or "custom"
    output = f", {encoder['output']} output ({encoder.get('token_width')} wide tokens)" if "output" in encoder else ""
    lines += [f"- encoder: {encoder.get('family')} {arch}, width {encoder.get('embed_dim')}{output}, "
              f"{encoder.get('num_heads')} heads, {encoder.get('resolution')} px, checkpoint "
              f"{encoder.get('checkpoint') or 'random weights (seeded)'}"
              + (f" (key {encoder['checkpoint_key']})" if encoder.get("checkpoint_key") else ""),
              f"- clips: {sampling.get('clips_per_video')} x {sampling.get('frames_per_clip')} frames at step "
              f"{sampling.get('frame_step')}, {sampling.get('spatial_views')} view(s), token grid "
              f"{attrs.get('token_grid')}",
              f"- probe: {probe.get('probe')}, recipe **{probe.get('recipe')}** (overridden: "
              f"{', '.join(probe.get('overridden') or []) or 'nothing'}), {settings_text(config)}"
              f"{probe.get('epochs')} epochs, batch {probe.get('batch_size')}, lr {probe.get('lrs')}, weight decay "
              f"{probe.get('weight_decays')} ({probe.get('wd_schedule')}), seed {probe.get('seed')}; training clips: "
              f"{probe.get('train_clips')}, test clips: {probe.get('test_clips')}"
              + (f", schedule {probe.get('schedule')}" if config.get("command") != "cross" else "")]
    if encoder.get("fine_tuned"):
        lines.append(f"- **note: the encoder was {encoder['fine_tuned']}**; this is not a frozen self-supervised "
                     "encoder's result")
    if config.get("test_basis"):  # the training store's is among the run's notes (runs.plan_run)
        lines.append(f"- test store: {compact_text(config['test_basis'])}")
    lines += [f"- {note}" for note in config.get("notes", [])]
    return lines + [""]


def settings_text(config: dict) -> str:
    """The probe's own settings as saved with the run (Probe.Settings), e.g. `settings: head linear, num_heads 16,
    num_queries 1, use_proj yes; ` (a pooled baseline has none)."""
    settings = config.get("probe_settings")
    if settings is None:  # runs written before settings were saved
        return ""
    if not settings:
        return "standardised mean-pooled tokens, "
    return "settings: " + ", ".join(f"{name} {words(value)}" for name, value in settings.items()) + "; "


def describe_protocol(config: dict, run: Path) -> list[str]:
    if config.get("command") == "cross":
        lines = ["## Protocol", "", "One probe trained on every video of the training store (candidates, if several, "
                 "chosen on an inner subject-disjoint split of it), then scored once on the test store."]
    else:
        lines = ["## Protocol", "", config.get("protocol", "")]
        if config.get("folds") == "official":
            lines += ["", "These are the dataset's official folds, which are by clip: no subject independence is "
                      "claimed. The published numbers this is compared against chose their checkpoints on the test "
                      "split; here candidates are chosen on an inner split of the training part only."]
    return lines + ["", "Training draws cached clips and views; the paper instead re-encodes freshly augmented clips "
                    "every epoch (RandAugment, random resized crops), which a cache cannot hold. Compare numbers with "
                    "that in mind.", ""]


def figures_section(run: Path, written: list[Path]) -> list[str]:
    pngs = sorted({p.name for p in written if p.suffix == ".png"} | {p.name for p in run.glob("*.png")})
    return ["## Figures", ""] + [f"- [{name}]({name})" for name in pngs] + [""]
