"""Subject-independent cross-validation from cached tokens.

Protocol (copied into every report): folds are subject-disjoint (StratifiedGroupKFold, seeded, folds.json), or a
dataset's official folds. Every fold's (lr, weight decay) candidates train together, from one read of each sampled
clip per epoch (schedule all-folds; per-fold trains fold after fold). With one candidate it trains on the whole
training fold; with several, they train on an inner subject-disjoint split of the training fold and the one with
the best validation UAR (PBV) after the last epoch is chosen there. A fold's test videos never reach its
candidates' training or selection; they are scored once, by the chosen candidate: every clip and view of a test
video gets posteriors, PBV sums them, MV counts argmax votes. The last epoch is evaluated (no early stopping).
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fer_cache.labels import canonical_order
from fer_probe import outputs
from fer_probe.config import ProbeConfig, resolve_num_heads
from fer_probe.device import resolve_device
from fer_probe.errors import FerProbeError
from fer_probe.folds import Fold, FoldCount, fold_indices, inner_split, load_folds, make_folds, official_folds
from fer_probe.metrics import FoldPredictions, summarise
from fer_probe.probes import registered
from fer_probe.reader import CacheReader
from fer_probe.sampling import TokenSource
from fer_probe.scoring import video_posteriors
from fer_probe.train import CandidateGrid, FoldPlan, Training, select, train_plans

PROTOCOL = __doc__.split("\n\n", 1)[1].strip()
Progress = Callable[[str, int, int], None]  # (what is training, epochs done, epochs in all)


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


def open_source(store: str, cfg: ProbeConfig, allow_incomplete: bool) -> TokenSource:
    cuda = resolve_device(cfg.device).type == "cuda"
    reader = CacheReader(store, allow_incomplete=allow_incomplete, memory_budget_mb=cfg.memory_budget_mb,
                         dtype=cfg.compute_dtype(), pin_memory=cuda)
    if len(reader) == 0:
        reader.close()
        raise FerProbeError(f"{store}: no usable videos")
    if registered(cfg.probe).consumes == "pooled":
        return TokenSource(reader, torch.from_numpy(reader.mean_pooled()))
    reader.preload()
    return TokenSource(reader)


def fit_to_store(cfg: ProbeConfig, reader: CacheReader) -> tuple[ProbeConfig, list[str]]:
    """Resolve the defaults that depend on the store (attention heads) and say how."""
    if not registered(cfg.probe).attention:
        return cfg, []
    heads, note = resolve_num_heads(cfg.num_heads, reader.encoder, reader.width)
    return cfg.with_num_heads(heads), [note]


def train_folds(source: TokenSource, plans: list[FoldPlan], targets: np.ndarray, *, cfg: ProbeConfig,
                num_classes: int, on_progress: Progress | None,
                variants: dict[str, ProbeConfig] | None = None) -> Training:
    """All plans in one pass per epoch, or (schedule per-fold) one plan after another; `variants` train together."""
    def progress(label: str):
        return (lambda epoch: on_progress(label, epoch + 1, cfg.epochs)) if on_progress else None

    if cfg.schedule == "all-folds" or len(plans) == 1:
        label = f"{len(plans)} folds" if len(plans) > 1 else "training"
        return train_plans(source, plans, targets, cfg=cfg, num_classes=num_classes, sampling_seed=cfg.seed,
                           on_epoch=progress(label), variants=variants)
    parts = [train_plans(source, [plan], targets, cfg=cfg, num_classes=num_classes, sampling_seed=plan.seed,
                         on_epoch=progress(f"fold {plan.fold + 1}/{len(plans)}"), variants=variants)
             for plan in plans]
    grid = CandidateGrid([c for part in parts for c in part.grid], plans, len(source.reader))
    return Training(grid, [row for part in parts for row in part.log])


def fold_plans(folds: list[Fold], reader: CacheReader, targets: np.ndarray, *, cfg: ProbeConfig) \
        -> tuple[list[FoldPlan], list[np.ndarray]]:
    plans, tests = [], []
    subjects = reader.subjects
    several = len(cfg.lrs) * len(cfg.weight_decays) > 1
    for f, fold in enumerate(folds):
        train_idx, test_idx = fold_indices(subjects, fold, reader.ids)
        if len(train_idx) == 0 or len(test_idx) == 0:
            raise FerProbeError(f"fold {f} has no training or no test videos; check the folds")
        if several:
            inner, val = inner_split(subjects, targets, train_idx, seed=cfg.seed + f)
            plans.append(FoldPlan(fold=f, train=inner, val=val, seed=cfg.seed + f))
        else:
            plans.append(FoldPlan(fold=f, train=train_idx, val=np.array([], dtype=np.int64), seed=cfg.seed + f))
        tests.append(test_idx)
    return plans, tests


def collapse_warning(fold: FoldPredictions, class_names: list[str], where: str) -> str | None:
    """A probe that predicts one class for every test video has learned nothing usable: say so."""
    pred_pbv = fold.video_level()[0]
    if len(pred_pbv) > 1 and len(set(pred_pbv.tolist())) == 1 and len(set(fold.labels.tolist())) > 1:
        return (f"{where} predicts '{class_names[pred_pbv[0]]}' for every one of its {len(pred_pbv)} test videos: "
                "the probe collapsed (near-constant features, or too few epochs or too high a learning rate)")
    return None


def choose_folds(reader: CacheReader, targets: np.ndarray, n_folds: FoldCount, *, folds_file: str | Path | None,
                 seed: int) -> list[Fold]:
    """A folds file, the dataset's official folds (n_folds "official"), or seeded subject folds."""
    if folds_file is not None:
        return load_folds(Path(folds_file), reader.subjects, reader.ids)
    if n_folds == "official":
        return official_folds(reader.ids, reader.splits)
    return make_folds(reader.subjects, targets, int(n_folds), seed=seed)


def require_two_classes(reader: CacheReader, store: str) -> None:
    """One class makes every prediction right: a UAR of 1.000 that means nothing. Refused before any training."""
    classes = [reader.label_names[i] for i in reader.active_classes()]
    if len(classes) < 2:
        found = f"only the class {classes[0]}" if classes else "no labelled video"
        raise FerProbeError(f"{store}: {found} among its {len(reader)} videos; a classifier needs at least 2 "
                            "classes (check the dataset's labels, or extract the other classes into this store)")


def run_cv(store: str, out: str | Path, cfg: ProbeConfig, *, n_folds: FoldCount = 5,
           folds_file: str | Path | None = None,
           allow_incomplete: bool = False, overwrite: bool = False,
           on_progress: Progress | None = None) -> RunResult:
    """Cross-validate a probe on one store; writes the run directory (DESIGN section 5) and returns its metrics."""
    return run_cv_many(store, {"": (out, cfg)}, n_folds=n_folds, folds_file=folds_file,
                       allow_incomplete=allow_incomplete, overwrite=overwrite, on_progress=on_progress)[""]


SHARED_TRAINING = ("epochs", "batch_size", "lrs", "weight_decays", "wd_schedule", "final_weight_decay", "head",
                   "num_heads", "num_queries", "grad_clip", "seed", "device", "memory_budget_mb", "precision",
                   "schedule", "val_curve")  # what runs trained together share (and one probe on tokens)


def run_cv_many(store: str, runs: dict[str, tuple[str | Path, ProbeConfig]], *, n_folds: FoldCount = 5,
                folds_file: str | Path | None = None, allow_incomplete: bool = False, overwrite: bool = False,
                on_progress: Progress | None = None) -> dict[str, RunResult]:
    """Several cv runs (name -> (run directory, config)) on the same folds from one read of each clip: the token
    probe's configurations that differ in proj or training clips are candidates of one grid, runs that differ only
    at test time share their trained probes, and the pooled baselines train on the clip means the test pass
    measured. They must agree on SHARED_TRAINING."""
    configs = [cfg for _, cfg in runs.values()]
    differ = [k for k in SHARED_TRAINING if len({str(getattr(c, k)) for c in configs}) > 1]
    on_tokens = [name for name, (_, cfg) in runs.items() if registered(cfg.probe).consumes == "tokens"]
    if len({runs[name][1].probe for name in on_tokens}) > 1:
        differ.append("probe (on tokens)")
    if differ:
        raise FerProbeError(f"runs trained together must agree on {', '.join(differ)}; run them one by one")
    source = open_source(store, runs[on_tokens[0]][1] if on_tokens else configs[0], allow_incomplete)
    with source.reader as reader:
        require_two_classes(reader, store)
        outs = {name: outputs.prepare_run_dir(out, overwrite) for name, (out, _) in runs.items()}
        fitted = {name: fit_to_store(cfg, reader) for name, (_, cfg) in runs.items()}  # (config, notes)
        cfg = next(iter(fitted.values()))[0]
        class_names = canonical_order([reader.label_names[i] for i in reader.active_classes()])
        targets = np.array([class_names.index(reader.label_names[i]) for i in reader.labels], dtype=np.int64)
        folds = choose_folds(reader, targets, n_folds, folds_file=folds_file, seed=cfg.seed)
        for name, out in outs.items():
            write_run_config(out, reader, fitted[name], store=store, folds=folds, folds_file=folds_file,
                             allow_incomplete=allow_incomplete, classes=class_names)
        plans, tests = fold_plans(folds, reader, targets, cfg=cfg)
        common = dict(tests=tests, targets=targets, num_classes=len(class_names), on_progress=on_progress)
        trained: dict[str, tuple[Training, str | None, list]] = {}  # name -> (training, variant, posteriors)
        on_pooled = [name for name in runs if name not in on_tokens]  # the pooled baselines
        if on_tokens:
            if on_pooled:
                source.record_means()
            trained |= train_and_score(source, plans, {name: fitted[name][0] for name in on_tokens}, **common)
        pooled = TokenSource(reader, source.pooled_means()) if on_tokens and on_pooled else source
        for name in on_pooled:
            trained |= train_and_score(pooled, plans, {name: fitted[name][0]}, **common,
                                       label=name if len(runs) > 1 else "")
        results = {name: score_run(source, training, plans, tests=tests, targets=targets, out=outs[name],
                                   cfg=fitted[name][0], notes=fitted[name][1], class_names=class_names,
                                   variant=variant, posteriors=posteriors)
                   for name, (training, variant, posteriors) in trained.items()}
    for name, (result, tables, weights) in results.items():
        training, variant, _ = trained[name]
        finish_run(result, tables, weights,
                   log=[row for row in training.log if variant is None or row["variant"] == variant])
    return {name: results[name][0] for name in runs}


def train_and_score(source: TokenSource, plans: list[FoldPlan], configs: dict[str, ProbeConfig], *,
                    tests: list[np.ndarray], targets: np.ndarray, num_classes: int, on_progress: Progress | None,
                    label: str = "") -> dict[str, tuple[Training, str | None, list]]:
    """Runs on one kind of input (name -> fitted config) trained together, then scored from one test pass: name ->
    (training, its variant in the grid or None when it is the only one, per fold its test posteriors)."""
    variants = {variant_of(cfg): cfg for cfg in configs.values()}
    progress = on_progress and (lambda what, done, total: on_progress(f"{label}: {what}" if label else what, done,
                                                                      total))
    training = train_folds(source, plans, targets, cfg=next(iter(configs.values())), num_classes=num_classes,
                           on_progress=progress, variants=variants if len(variants) > 1 else None)
    chosen = {name: variant_of(cfg) if len(variants) > 1 else None for name, cfg in configs.items()}
    scored = score_tests(source, training, plans, tests=tests, runs={name: (configs[name], chosen[name])
                                                                     for name in configs})
    return {name: (training, chosen[name], scored[name]) for name in configs}


def variant_of(cfg: ProbeConfig) -> str:
    """What makes configurations train differently when they share everything in SHARED_TRAINING and the probe."""
    return f"{'proj' if cfg.use_proj else 'no-proj'}/{'all-clips' if cfg.train_clips == 'all' else 'one-clip'}"


def write_run_config(out: Path, reader: CacheReader, fitted: tuple[ProbeConfig, list[str]], *, store: str,
                     folds: list[Fold], folds_file, allow_incomplete: bool, classes: list[str]) -> None:
    cfg, notes = fitted
    kind = "official" if folds[0].by_video else "subject"
    outputs.write_config(out, {"command": "cv", "store": str(store), "fingerprint": reader.fingerprint,
                               "n_folds": len(folds), "folds": kind,
                               "folds_file": str(folds_file) if folds_file else None,
                               "allow_incomplete": allow_incomplete, "excluded_videos": reader.excluded,
                               "unlabelled_videos": reader.unlabelled, "classes": classes,
                               "notes": notes, "store_attrs": reader.attrs, "protocol": PROTOCOL}, cfg)
    outputs.write_folds(out, folds, cfg.seed)


def score_tests(source: TokenSource, training: Training, plans: list[FoldPlan], *, tests: list[np.ndarray],
                runs: dict[str, tuple[ProbeConfig, str | None]]) -> dict[str, list[list[np.ndarray]]]:
    """Run name -> per fold, the clip posteriors of each test video under the fold's chosen candidate of the run's
    variant, scoring the clips its config says; each test video is read once for all the runs, and every fold's
    test videos in one stream of reads (no fold starts by waiting for its first video)."""
    models, modes, videos, wanted = [], [], [], []
    for plan, test_idx in zip(plans, tests):
        first = len(models)
        for run_cfg, variant in runs.values():
            models.append(select(training.grid.fold(plan.fold, variant))[0].model)
            modes.append((run_cfg.train_clips, run_cfg.test_clips))
        videos += test_idx.tolist()
        wanted += [list(range(first, len(models)))] * len(test_idx)
    per_video = video_posteriors(source, models, videos, cfg=next(iter(runs.values()))[0], wanted=wanted,
                                 modes=modes)
    out: dict[str, list[list[np.ndarray]]] = {name: [] for name in runs}
    start = 0
    for f, test_idx in enumerate(tests):
        fold_videos = per_video[start:start + len(test_idx)]
        start += len(test_idx)
        for j, name in enumerate(runs):
            out[name].append([posteriors[f * len(runs) + j] for posteriors in fold_videos])
    return out


def score_run(source: TokenSource, training: Training, plans: list[FoldPlan], *, tests: list[np.ndarray],
              targets: np.ndarray, out: Path, cfg: ProbeConfig, notes: list[str], class_names: list[str],
              variant: str | None, posteriors: list[list[np.ndarray]]) -> tuple[RunResult, list[dict], list]:
    """The run's result from its posteriors (score_tests), with the head tables and the weights to write."""
    reader = source.reader
    result = RunResult(out=out, metrics={}, class_names=class_names, config=cfg, excluded=reader.excluded,
                       unlabelled=reader.unlabelled, notes=notes)
    tables, weights = [], []
    for f, (plan, test_idx) in enumerate(zip(plans, tests)):
        chosen, table = select(training.grid.fold(plan.fold, variant))
        fold = FoldPredictions(fold=f, video_ids=[reader.ids[i] for i in test_idx],
                               subjects=[reader.subjects[i] for i in test_idx],
                               labels=targets[test_idx], clip_posteriors=posteriors[f])
        result.folds.append(fold)
        result.selected.append(chosen.name)
        tables.append({"fold": f, "heads": table})
        weights.append((out / "weights" / f"fold{f}.safetensors", chosen, reader.width))
        warning = collapse_warning(fold, class_names, f"fold {f}")
        if warning:
            result.warnings.append(warning)
    return result, tables, weights


def finish_run(result: RunResult, tables: list[dict], weights: list, *, log: list[dict]) -> None:
    """Metrics, then the small result files, then the weights (a failure there keeps the rest)."""
    out, cfg = result.out, result.config
    result.metrics = summarise(result.folds, seed=cfg.seed)
    with outputs.writing(out, "metrics.json, predictions.csv and train_log.csv"):  # the small results first
        outputs.write_results(out, result.folds, result.metrics, class_names=result.class_names, head_tables=tables)
        outputs.write_train_log(out, log)
        outputs.write_warnings(out, result.warnings)
    with outputs.writing(out, "the probe weights", kept="metrics.json and predictions.csv are written"):
        for path, chosen, width in weights:
            outputs.write_weights(path, chosen, cfg, class_names=result.class_names, width=width)


def with_settings(cfg: ProbeConfig, **changes) -> ProbeConfig:
    """cfg with some fields changed, the changes recorded as overrides of its recipe."""
    overridden = tuple(dict.fromkeys(cfg.overridden + tuple(changes)))
    return replace(cfg, **changes, overridden=overridden)
