"""What every protocol shares: opening a store for a run, resolving store-dependent defaults, fold plans, the
record of a finished run, its warnings, and writing its run directory (small results first, then the weights)."""

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from fer_probe.config import ProbeConfig, resolve_num_heads
from fer_probe.data.inputs import InputKind
from fer_probe.data.reader import CacheReader, ReadPolicy
from fer_probe.data.sampling import TokenSource
from fer_probe.errors import FerProbeError
from fer_probe.probes.registry import registered
from fer_probe.protocols.folds import inner_split
from fer_probe.results import outputs
from fer_probe.results.metrics import FoldPredictions, summarise
from fer_probe.results.report_tables import compact_text
from fer_probe.training.candidates import Candidate, FoldPlan


@dataclass(kw_only=True)
class RunResult:
    out: Path
    metrics: dict
    class_names: list[str]
    config: ProbeConfig
    folds: list[FoldPredictions] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)  # chosen candidate per fold
    excluded: int = 0  # pending or failed videos left out with allow_incomplete
    unlabelled: int = 0  # videos with label -1 (unknown): neither trained on nor scored
    warnings: list[str] = field(default_factory=list)  # e.g. a fold that predicts one class for every video
    notes: list[str] = field(default_factory=list)  # how defaults were resolved against the store

    @property
    def one_posterior_per_video(self) -> bool:
        """Every test video scored with one posterior: its MV and clip-level metrics are PBV's by construction."""
        return all(len(p) == 1 for fold in self.folds for p in fold.clip_posteriors)


@dataclass(kw_only=True)
class SavedProbe:
    """A chosen candidate's weights and where they go (weights/fold<f>.safetensors, or all.safetensors)."""
    path: Path
    candidate: Candidate
    classes: list[str]  # the probe's output classes
    width: int


@dataclass(kw_only=True)
class FinishedRun:
    """A scored run, ready to be written: its result, its candidates' tables (heads.json), its chosen probes and
    its training log."""
    result: RunResult
    candidate_tables: list[dict]
    probes: list[SavedProbe]
    log: list[dict]
    mapping: dict | None = None  # cross: how the test store's labels were mapped


def open_source(store: str, cfg: ProbeConfig, allow_incomplete: bool, *,
                only: frozenset[str] | None = None) -> TokenSource:
    """The store's tokens for a run in its precision (resolved here, once), streamed into recycled buffers; the
    pooled baselines get every clip's mean in one pass, token probes the store in memory where it fits. `only`:
    the videos a comparison across stores keeps."""
    reader = CacheReader(store, allow_incomplete=allow_incomplete, memory_budget_mb=cfg.memory_budget_mb,
                         precision=cfg.resolve_precision(), policy=ReadPolicy(recycle=True), only=only)
    if len(reader) == 0:
        reader.close()
        raise FerProbeError(f"{store}: no usable videos")
    if registered(cfg.probe).input_kind == InputKind.POOLED:
        return TokenSource(reader, torch.from_numpy(reader.mean_pooled()))
    reader.preload()
    return TokenSource(reader)


@dataclass(kw_only=True)
class PlannedRun:
    """One run of a protocol before training: its name, its (new or emptied) run directory, and its config fitted to
    the store, with notes on how store-dependent defaults were resolved."""
    name: str
    out: Path
    config: ProbeConfig
    notes: list[str]


def plan_run(name: str, out: str | Path, cfg: ProbeConfig, *, reader: CacheReader, overwrite: bool,
             scoring: CacheReader | None = None) -> PlannedRun:
    """The run directory prepared, and the defaults that depend on the store (attention heads, for probes that have
    them; training copies; test clips on the scoring store, `reader` where None) resolved and said."""
    cfg, notes = resolve_clips(cfg, reader, scoring or reader)
    out = outputs.prepare_run_dir(out, overwrite)
    compact = compact_text(reader.attrs.get("storage", {}).get("basis"))
    notes += [f"tokens: {compact}; the probe computes exactly on the tokens these coordinates stand for, not on the "
              "encoder's own tokens"] if compact else []
    if cfg.batch_size > len(reader):
        notes.append(f"batch size {cfg.batch_size} is more than the store's {len(reader)} videos: every step trains "
                     "on a fold's whole training set (one step an epoch)")
    if "num_heads" not in {f.name for f in fields(registered(cfg.probe).Settings)}:
        return PlannedRun(name=name, out=out, config=cfg, notes=notes)
    heads, note = resolve_num_heads(cfg.num_heads, reader.encoder, reader.width)
    return PlannedRun(name=name, out=out, config=cfg.with_num_heads(heads), notes=[note, *notes])


def resolve_clips(cfg: ProbeConfig, reader: CacheReader, scoring: CacheReader) -> tuple[ProbeConfig, list[str]]:
    """train_copies and test_clips resolved against the stores, refused in one line where they cannot apply."""
    on_tokens = registered(cfg.probe).input_kind == InputKind.TOKENS
    copies = cfg.train_copies
    if copies == "auto":
        copies = "augmented" if reader.copies and on_tokens else "clean"
    if copies == "augmented" and not (reader.copies and on_tokens):
        why = "the pooled baselines train on clean clip means" if reader.copies else "it holds no augmented copies"
        raise FerProbeError(f"--train-copies augmented: {reader.location}: {why}; extract with extraction augment "
                            "(or train on clean copies)")
    if reader.dense and (cfg.train_clips == "all" or not on_tokens):
        raise FerProbeError(f"{reader.location} holds every clip start (each video its own clip count): train on a "
                            "store of fixed clips and score this one with --test-store (or --train-clips one)")
    test_clips = cfg.test_clips if cfg.test_clips != "auto" else "each" if scoring.dense else "all"
    notes = [f"training on the store's {reader.copies} augmented copies of every clip (one drawn per clip and "
             "epoch, as the reference draws a fresh augmentation); validation and test on clean clips"] \
        if copies == "augmented" else []
    if scoring.dense:
        notes.append(f"test videos scored on every clip start of {scoring.location} (each video its own clip count: "
                     f"{int(scoring.clip_counts.min())}-{int(scoring.clip_counts.max())})")
    return replace(cfg, train_copies=copies, test_clips=test_clips), notes


def require_two_classes(reader: CacheReader, store: str) -> None:
    """One class makes every prediction right: a UAR of 1.000 that means nothing. Refused before any training."""
    classes = [reader.label_names[i] for i in reader.active_classes()]
    if len(classes) < 2:
        found = f"only the class {classes[0]}" if classes else "no labelled video"
        raise FerProbeError(f"{store}: {found} among its {len(reader)} videos; a classifier needs at least 2 "
                            "classes (check the dataset's labels, or extract the other classes into this store)")


def fold_plan(fold: int, train: np.ndarray, *, subjects: list[str], targets: np.ndarray, cfg: ProbeConfig,
              seed: int) -> FoldPlan:
    """What a fold's candidates train on: all of `train` with one candidate, else an inner subject-disjoint split
    of it whose validation part chooses among them."""
    if cfg.candidates_per_fold > 1:
        inner, val = inner_split(subjects, targets, train, seed=seed)
        return FoldPlan(fold=fold, train=inner, val=val, seed=seed)
    return FoldPlan(fold=fold, train=train, val=np.array([], dtype=np.int64), seed=seed)


def collapse_warning(fold: FoldPredictions, class_names: list[str], where: str) -> str | None:
    """A probe that predicts one class for every test video has learned nothing usable: say so."""
    pred_pbv = fold.video_level()[0]
    if len(pred_pbv) > 1 and len(set(pred_pbv.tolist())) == 1 and len(set(fold.labels.tolist())) > 1:
        return (f"{where} predicts '{class_names[pred_pbv[0]]}' for every one of its {len(pred_pbv)} test videos: "
                "the probe collapsed (near-constant features, or too few epochs or too high a learning rate)")
    return None


def write_run(run: FinishedRun) -> RunResult:
    """Metrics, then the small result files, then the weights (a failure there keeps the rest)."""
    result = run.result
    out, cfg = result.out, result.config
    result.metrics = summarise(result.folds, seed=cfg.seed)
    with outputs.writing(out, "metrics.json, predictions.csv and train_log.csv"):  # the small results first
        outputs.write_results(out, result.folds, result.metrics, class_names=result.class_names,
                              candidate_tables=run.candidate_tables, mapping=run.mapping)
        outputs.write_train_log(out, run.log)
        outputs.write_warnings(out, result.warnings)
    with outputs.writing(out, "the probe weights", kept="metrics.json and predictions.csv are written"):
        for probe in run.probes:
            outputs.write_weights(probe.path, probe.candidate, cfg, class_names=probe.classes, width=probe.width)
    return result
