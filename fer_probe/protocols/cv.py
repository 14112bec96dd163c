"""Subject-independent cross-validation from cached tokens.

Protocol (copied into every report): folds are subject-disjoint (StratifiedGroupKFold, seeded, folds.json), or a
dataset's official folds. Every fold's (lr, weight decay) candidates train together, from one read of each sampled
clip per epoch (schedule all-folds; per-fold trains fold after fold). With one candidate it trains on the whole
training fold; with several, they train on an inner subject-disjoint split of the training fold and the one with
the best validation UAR (PBV) after the last epoch is chosen there. A fold's test videos never reach its
candidates' training or selection; they are scored once, by the chosen candidate: every clip and view of a test
video gets posteriors, PBV sums them, MV counts argmax votes. The last epoch is evaluated (no early stopping).
"""

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_cache.labels import canonical_order
from fer_probe.config import DEFAULT_FOLDS, ProbeConfig, check_trained_together
from fer_probe.data.inputs import InputKind
from fer_probe.data.reader import CacheReader
from fer_probe.data.sampling import TokenSource
from fer_probe.errors import FerProbeError
from fer_probe.probes.registry import registered
from fer_probe.protocols.engine import Progress, TrainedRun, score_tests, train_folds, train_together
from fer_probe.protocols.folds import Fold, FoldCount, fold_indices, load_folds, make_folds, official_folds
from fer_probe.protocols.runs import (
    FinishedRun,
    PlannedRun,
    RunResult,
    SavedProbe,
    collapse_warning,
    fold_plan,
    open_source,
    plan_run,
    require_two_classes,
    write_run,
)
from fer_probe.results import outputs
from fer_probe.results.metrics import FoldPredictions
from fer_probe.training.candidates import FoldPlan, select

PROTOCOL = __doc__.split("\n\n", 1)[1].strip()


@dataclass(kw_only=True)
class CvPlan:
    """What every run of one cross-validation shares: its classes, targets, folds and each fold's plan and test
    videos."""
    store: str
    class_names: list[str]
    targets: np.ndarray  # [V] index into class_names
    folds: list[Fold]
    plans: list[FoldPlan]
    tests: list[np.ndarray]  # per fold, its test videos (reader rows)


def choose_folds(reader: CacheReader, targets: np.ndarray, n_folds: FoldCount, *, folds_file: str | Path | None,
                 seed: int) -> list[Fold]:
    """A folds file, the dataset's official folds (n_folds "official"), or seeded subject folds."""
    if folds_file is not None:
        return load_folds(Path(folds_file), reader.subjects, reader.ids)
    if n_folds == "official":
        return official_folds(reader.ids, reader.splits)
    return make_folds(reader.subjects, targets, int(n_folds), seed=seed)


def plan_cv(reader: CacheReader, store: str, cfg: ProbeConfig, *, n_folds: FoldCount,
            folds_file: str | Path | None) -> CvPlan:
    require_two_classes(reader, store)
    class_names = canonical_order([reader.label_names[i] for i in reader.active_classes()])
    targets = np.array([class_names.index(reader.label_names[i]) for i in reader.labels], dtype=np.int64)
    folds = choose_folds(reader, targets, n_folds, folds_file=folds_file, seed=cfg.seed)
    plans, tests = [], []
    for f, fold in enumerate(folds):
        train_idx, test_idx = fold_indices(reader.subjects, fold, reader.ids)
        if len(train_idx) == 0 or len(test_idx) == 0:
            raise FerProbeError(f"fold {f} has no training or no test videos; check the folds")
        plans.append(fold_plan(f, train_idx, subjects=reader.subjects, targets=targets, cfg=cfg, seed=cfg.seed + f))
        tests.append(test_idx)
    return CvPlan(store=store, class_names=class_names, targets=targets, folds=folds, plans=plans, tests=tests)


def write_run_config(run: PlannedRun, reader: CacheReader, plan: CvPlan, *, folds_file, allow_incomplete: bool,
                     test_store: str | None = None, test_attrs: dict | None = None) -> None:
    kind = "official" if plan.folds[0].by_video else "subject"
    outputs.write_config(run.out, {"command": "cv", "store": str(plan.store), "test_store": test_store,
                                   "test_store_sampling": (test_attrs or {}).get("sampling"),
                                   "fingerprint": reader.fingerprint,
                                   "n_folds": len(plan.folds), "folds": kind,
                                   "folds_file": str(folds_file) if folds_file else None,
                                   "allow_incomplete": allow_incomplete, "excluded_videos": reader.excluded,
                                   "unlabelled_videos": reader.unlabelled, "classes": plan.class_names,
                                   "notes": run.notes, "store_attrs": reader.attrs, "protocol": PROTOCOL},
                         run.config)
    outputs.write_folds(run.out, plan.folds, run.config.seed)


def finish(trained: TrainedRun, plan: CvPlan, reader: CacheReader) -> FinishedRun:
    """A trained run's result from its posteriors: per fold its predictions, its chosen candidate and warnings."""
    run = trained.run
    result = RunResult(out=run.out, metrics={}, class_names=plan.class_names, config=run.config,
                       excluded=reader.excluded, unlabelled=reader.unlabelled, notes=run.notes)
    tables, probes = [], []
    for fold_plan_, test_idx, posteriors in zip(plan.plans, plan.tests, trained.posteriors):
        f = fold_plan_.fold
        selection = select(trained.training.grid.fold(f, trained.variant))
        fold = FoldPredictions(fold=f, video_ids=[reader.ids[i] for i in test_idx],
                               subjects=[reader.subjects[i] for i in test_idx],
                               labels=plan.targets[test_idx], clip_posteriors=posteriors)
        result.folds.append(fold)
        result.selected.append(selection.chosen.name)
        tables.append({"fold": f, "heads": selection.table})
        probes.append(SavedProbe(path=run.out / "weights" / f"fold{f}.safetensors", candidate=selection.chosen,
                                 classes=plan.class_names, width=reader.width))
        warning = collapse_warning(fold, plan.class_names, f"fold {f}")
        if warning:
            result.warnings.append(warning)
    return FinishedRun(result=result, candidate_tables=tables, probes=probes, log=trained.log())


def run_cv(store: str, out: str | Path, cfg: ProbeConfig, *, n_folds: FoldCount = DEFAULT_FOLDS,
           folds_file: str | Path | None = None, allow_incomplete: bool = False, overwrite: bool = False,
           on_progress: Progress | None = None, only: frozenset[str] | None = None,
           test_store: str | None = None) -> RunResult:
    """Cross-validate a probe on one store (on the videos `only` names, where given); writes the run directory
    (DESIGN section 5) and returns its metrics. `test_store`: score each fold's test videos from another store of
    the same videos and encoder (e.g. every clip start), the folds and training from `store`."""
    if not isinstance(cfg, ProbeConfig):
        raise FerProbeError(f"run_cv takes a ProbeConfig (ProbeConfig.from_recipe(...)), got {type(cfg).__name__}")
    source = open_source(store, cfg, allow_incomplete, only=only)
    with source.reader as reader:
        plan = plan_cv(reader, store, cfg, n_folds=n_folds, folds_file=folds_file)
        tester, tests = (source, plan.tests) if test_store is None else \
            scoring_source(test_store, reader, plan.tests, cfg=cfg, allow_incomplete=allow_incomplete)
        with tester.reader if test_store is not None else nullcontext():
            run = plan_run("", out, cfg, reader=reader, overwrite=overwrite, scoring=tester.reader)
            write_run_config(run, reader, plan, folds_file=folds_file, allow_incomplete=allow_incomplete,
                             test_store=test_store, test_attrs=tester.reader.attrs if test_store else None)
            training = train_folds(source, plan.plans, plan.targets, cfg=run.config,
                                   num_classes=len(plan.class_names), on_progress=on_progress)
            posteriors = score_tests(tester, training, plan.plans, tests=tests, runs=[run], variants={"": ""})[""]
        finished = finish(TrainedRun(run=run, training=training, variant="", posteriors=posteriors), plan, reader)
    return write_run(finished)


def scoring_source(test_store: str, reader: CacheReader, tests: list[np.ndarray], *, cfg: ProbeConfig,
                allow_incomplete: bool) -> tuple[TokenSource, list[np.ndarray]]:
    """The test store's tokens, and each fold's test videos as its rows; refused in one line unless it holds every
    test video with the same subject and label name, extracted with the same encoder."""
    tester = open_source(test_store, cfg, allow_incomplete)
    other = tester.reader
    try:
        if other.attrs.get("encoder") != reader.attrs.get("encoder") or other.width != reader.width:
            raise FerProbeError(f"{test_store} was extracted with another encoder than {reader.location}; test on a "
                                "store of the same encoder (another sampling of the same videos)")
        position = {video_id: i for i, video_id in enumerate(other.ids)}
        for i in sorted({int(i) for fold in tests for i in fold}):
            j = position.get(reader.ids[i])
            mine = (reader.subjects[i], reader.label_names[reader.labels[i]])
            theirs = None if j is None else (other.subjects[j], other.label_names[other.labels[j]])
            if theirs != mine:
                what = f"subject/label {theirs} where {reader.location} has {mine}" if theirs else "no such video"
                raise FerProbeError(f"{test_store}: test video {reader.ids[i]}: {what}; test on a store extracted "
                                    "from the same videos")
        return tester, [np.array([position[reader.ids[i]] for i in fold], dtype=np.int64) for fold in tests]
    except FerProbeError:
        other.close()
        raise


def run_cv_many(store: str, runs: dict[str, tuple[str | Path, ProbeConfig]], *, n_folds: FoldCount = DEFAULT_FOLDS,
                folds_file: str | Path | None = None, allow_incomplete: bool = False, overwrite: bool = False,
                on_progress: Progress | None = None, only: frozenset[str] | None = None) -> dict[str, RunResult]:
    """Several cv runs (name -> (run directory, config)) on the same folds from one read of each clip (engine):
    the configs may differ only as config.check_trained_together allows."""
    kind_of = {name: registered(cfg.probe).input_kind for name, (_, cfg) in runs.items()}
    on_tokens = [name for name in runs if kind_of[name] == InputKind.TOKENS]
    on_pooled = [name for name in runs if kind_of[name] == InputKind.POOLED]
    check_trained_together([cfg for _, cfg in runs.values()])
    first = runs[(on_tokens or on_pooled)[0]][1]
    source = open_source(store, first, allow_incomplete, only=only)
    with source.reader as reader:
        plan = plan_cv(reader, store, first, n_folds=n_folds, folds_file=folds_file)
        planned = {name: plan_run(name, out, cfg, reader=reader, overwrite=overwrite)
                   for name, (out, cfg) in runs.items()}
        for run in planned.values():
            write_run_config(run, reader, plan, folds_file=folds_file, allow_incomplete=allow_incomplete)
        common = dict(tests=plan.tests, targets=plan.targets, num_classes=len(plan.class_names),
                      on_progress=on_progress)
        trained: list[TrainedRun] = []
        if on_tokens:
            if on_pooled:
                source.record_means()
            trained += train_together(source, plan.plans, [planned[n] for n in on_tokens], **common)
        pooled = TokenSource(reader, source.pooled_means()) if on_tokens and on_pooled else source
        for name in on_pooled:  # each baseline on its own: they differ in their probe
            trained += train_together(pooled, plan.plans, [planned[name]], **common,
                                      label=name if len(runs) > 1 else "")
        finished = {t.run.name: finish(t, plan, reader) for t in trained}
    return {name: write_run(finished[name]) for name in runs}
