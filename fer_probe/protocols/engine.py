"""The engine under every protocol: train the candidates of some fold plans from one read of each sampled clip,
then score every test video once for each run trained. Several runs can train together (ablate): token-probe runs
that differ in VARIANT fields are candidate groups of one grid, runs that differ only in test-only ones share their
trained probes, and the pooled baselines train on the clip means that the test pass measured.

Axes: M scored inputs of a test video, C classes.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fer_probe.config import ProbeConfig
from fer_probe.data.sampling import TokenSource
from fer_probe.protocols.runs import PlannedRun
from fer_probe.training.candidates import CandidateGrid, FoldPlan, Training, select
from fer_probe.training.scoring import video_posteriors
from fer_probe.training.train import train_plans

Progress = Callable[[str, int, int], None]  # (what is training, epochs done, epochs in all)


@dataclass(kw_only=True)
class TrainedRun:
    """A run after training and the test pass: the training it took part in, its candidate group in that training's
    grid ("" when it trained alone), and per fold the posteriors [M, C] of each test video."""
    run: PlannedRun
    training: Training
    variant: str
    posteriors: list[list[np.ndarray]]

    def log(self) -> list[dict]:
        """Its own rows of the training log (train_log.csv)."""
        return [row for row in self.training.log if row["variant"] == self.variant]


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


def score_tests(source: TokenSource, training: Training, plans: list[FoldPlan], *, tests: list[np.ndarray],
                runs: list[PlannedRun], variants: dict[str, str]) -> dict[str, list[list[np.ndarray]]]:
    """Run name -> per fold, the posteriors of each test video under the fold's chosen candidate of the run's
    variant (`variants`, by run name), scoring the clips its config says. Each test video is read once for all the
    runs, and every fold's test videos in one stream of reads (no fold starts by waiting for its first video)."""
    models, modes, videos, wanted = [], [], [], []
    model_of: dict[tuple[int, str], int] = {}  # (fold, run name) -> its position in models
    for plan, test_idx in zip(plans, tests):
        for run in runs:
            model_of[(plan.fold, run.name)] = len(models)
            models.append(select(training.grid.fold(plan.fold, variants[run.name])).chosen.model)
            modes.append((run.config.train_clips, run.config.test_clips))
        videos += test_idx.tolist()
        wanted += [[model_of[(plan.fold, run.name)] for run in runs]] * len(test_idx)
    per_video = iter(video_posteriors(source, models, videos, cfg=runs[0].config, wanted=wanted, modes=modes))
    out: dict[str, list[list[np.ndarray]]] = {run.name: [] for run in runs}
    for plan, test_idx in zip(plans, tests):
        fold_videos = [next(per_video) for _ in test_idx]
        for run in runs:
            out[run.name].append([posteriors[model_of[(plan.fold, run.name)]] for posteriors in fold_videos])
    return out


def train_together(source: TokenSource, plans: list[FoldPlan], runs: list[PlannedRun], *, tests: list[np.ndarray],
                   targets: np.ndarray, num_classes: int, on_progress: Progress | None,
                   label: str = "") -> list[TrainedRun]:
    """Runs on one kind of input (their configs checked by config.check_trained_together) trained as one grid, one
    candidate group per distinct variant, then scored from one test pass."""
    variants = {run.config.variant(): run.config for run in runs}
    several = len(variants) > 1
    progress = on_progress and (lambda what, done, total: on_progress(f"{label}: {what}" if label else what, done,
                                                                      total))
    training = train_folds(source, plans, targets, cfg=runs[0].config, num_classes=num_classes,
                           on_progress=progress, variants=variants if several else None)
    chosen = {run.name: run.config.variant() if several else "" for run in runs}
    scored = score_tests(source, training, plans, tests=tests, runs=runs, variants=chosen)
    return [TrainedRun(run=run, training=training, variant=chosen[run.name], posteriors=scored[run.name])
            for run in runs]
