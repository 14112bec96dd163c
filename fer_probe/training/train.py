"""Training every candidate probe of every fold from one read of each sampled clip.

A candidate is one (fold, learning rate, weight decay) probe, known by its key in the CandidateGrid
(`fold2/lr1e-03_wd0.01`). Each epoch draws one sample per video of the union of all folds' training sets (the
draws depend on the seed only, never on token values) and feeds each batch to every candidate whose training set
holds the video, with a per-candidate loss mask. All attentive candidates that train on the same clips share one
pass over the tokens (probes.forward_many); candidates of configurations trained together (ablate) that train on one
clip a video take the drawn clip out of a batch of concatenated clips. The global batch is sized so that a fold's
expected share of it equals the batch size; a fold's batches therefore vary around that size (documented in the
README). schedule "per-fold" trains fold after fold, each on batches of exactly its own videos, as the reference
code does.

Axes: P candidates, B videos in a batch, C classes.
"""

import gc
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from fer_probe.config import ProbeConfig
from fer_probe.data.precision import Precision
from fer_probe.data.sampling import Batch, TokenSource
from fer_probe.probes.base import forward_many
from fer_probe.probes.registry import registered
from fer_probe.results.metrics import uar
from fer_probe.training.candidates import Candidate, CandidateGrid, FoldPlan, Training, make_candidates
from fer_probe.training.optim import clip_gradients, cosine
from fer_probe.training.scoring import video_posteriors


class StepRunner:
    """One optimisation step of every candidate that has training videos in the batch."""

    def __init__(self, grid: CandidateGrid, targets: np.ndarray, *, cfg: ProbeConfig, precision: Precision):
        self.grid, self.cfg = grid, cfg
        self.precision = precision
        self.device = self.precision.device
        self.targets = torch.from_numpy(targets)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.scaled else None
        # loss sums and correct counts stay on the device (no synchronisation per step); samples are known here
        self.position = {key: p for p, key in enumerate(grid.candidates)}
        self.sums = torch.zeros(len(grid), 2, device=self.device)  # [P, 2]
        self.samples = np.zeros(len(grid))  # [P]

    def __call__(self, batch: Batch, progress: float) -> None:
        rows = self.grid.training_on(batch.videos)  # key -> its videos' positions in the batch
        x = self.precision.to_compute(batch.inputs)
        y = self.targets[batch.videos].to(self.device)
        groups: dict[str, list[str]] = {}  # train_clips -> keys: candidates on one clip a video take the drawn one
        for key in rows:
            groups.setdefault(self.grid[key].train_clips, []).append(key)
        rows = {key: rows[key] for keys in groups.values() for key in keys}
        logits = []  # P' x [B_p, C], in the order of rows
        for train_clips, keys in groups.items():
            inputs = batch.one_clip(x) if train_clips == "one" else x
            every = all(len(rows[key]) == len(batch.videos) for key in keys)  # then one pass serves every candidate
            with self.precision.autocast():
                logits += forward_many([self.grid[key].model.train() for key in keys], inputs,
                                       None if every else [rows[key] for key in keys],
                                       precision=self.precision)
        if batch.verify is not None and not all(bool(torch.isfinite(lg).all()) for lg in logits):
            batch.verify()  # refuses the video whose non-finite tokens made them, else training itself diverged
        losses, correct = [], []
        for mine, lg in zip(rows.values(), logits):
            lg, target = lg.float(), y[mine]
            losses.append(F.cross_entropy(lg, target))
            correct.append((lg.detach().argmax(1) == target).sum())
        counts = torch.tensor([len(mine) for mine in rows.values()], dtype=torch.float32)
        active = np.array([self.position[key] for key in rows])
        with torch.no_grad():
            sums = torch.stack([torch.stack(losses).detach() * counts.to(self.device), torch.stack(correct).float()], 1)
            self.sums.index_add_(0, torch.from_numpy(active).to(self.device), sums)  # [P', 2] into [P, 2]
        self.samples[active] += counts.numpy()
        for key in rows:
            self.grid[key].optimizer.zero_grad()
        total = torch.stack(losses).sum()
        (self.scaler.scale(total) if self.scaler else total).backward()
        for key in rows:
            self.update(self.grid[key], progress)
        if self.scaler:
            self.scaler.update()

    def update(self, candidate: Candidate, progress: float) -> None:
        cfg = self.cfg
        decay = cosine(candidate.weight_decay, cfg.final_weight_decay, progress) if cfg.wd_schedule == "cosine" \
            else candidate.weight_decay
        decay_group, _ = candidate.optimizer.param_groups  # (decayed weights, biases and norms)
        decay_group["weight_decay"] = decay
        for group in candidate.optimizer.param_groups:
            group["lr"] = cosine(candidate.lr, 0.0, progress)
        if self.scaler:
            self.scaler.unscale_(candidate.optimizer)
        clip_gradients(candidate.model, cfg.grad_clip)
        if self.scaler:
            self.scaler.step(candidate.optimizer)
        else:
            candidate.optimizer.step()

    def epoch_means(self) -> dict[str, tuple[float, float]]:
        """Mean training loss and accuracy per candidate key since the last call."""
        means = self.sums.cpu().numpy() / np.maximum(self.samples, 1)[:, None]  # [P, 2]
        self.sums.zero_()
        self.samples[:] = 0
        return {key: (float(means[p, 0]), float(means[p, 1])) for key, p in self.position.items()}


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while training: every step makes thousands of autograd objects, and each
    collection they trigger walks every live object (0.75 s of a 23 s paper-recipe run). Autograd graphs hold no
    cycles; they are freed as they go out of use either way."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def train_plans(source: TokenSource, plans: list[FoldPlan], targets: np.ndarray, *, cfg: ProbeConfig,
                num_classes: int, sampling_seed: int, on_epoch: Callable[[int], None] | None = None,
                variants: dict[str, ProbeConfig] | None = None) -> Training:
    """Train every candidate of every plan in one pass per epoch over the union of their training videos; the
    candidates of a plan with validation videos are scored there after the last epoch (after every epoch with
    val_curve), and every epoch's mean loss and accuracy go to the log (train_log.csv). `variants` (name ->
    config) trains several configurations of the probe as candidates of the same grid, from the same reads."""
    device = source.reader.precision.device
    variants = variants or {"": cfg}
    if len({registered(c.probe).input_kind for c in variants.values()}) > 1:
        raise ValueError("probes on tokens and on pooled features cannot train from the same batches")
    union = np.unique(np.concatenate([plan.train for plan in plans]))  # the videos some candidate trains on
    all_clips = any(c.train_clips == "all" for c in variants.values())  # one-clip candidates cut theirs out
    share = np.mean([len(plan.train) for plan in plans]) / len(union)  # a fold's expected part of a batch
    batch_size = max(1, round(cfg.batch_size / share))
    total_steps = cfg.epochs * math.ceil(source.samples_per_epoch(len(union), all_clips) / batch_size)
    # on the CPU a non-finite token turns the outputs of every probe that reads it non-finite (NaN through the
    # LayerNorm statistics), and every token of a batch is read when all candidates train on the same clips
    check = device.type != "cpu" or len({c.train_clips for c in variants.values()}) > 1
    source.reader.policy = replace(source.reader.policy, trainer_checks_batches=not check)
    epochs = source.epochs(union, [np.random.default_rng([sampling_seed, epoch]) for epoch in range(cfg.epochs)],
                           batch_size, all_clips=all_clips, copies=copy_draws(source.reader, cfg))  # reads start
    with collector_paused():  # 20M-parameter probes and every step's autograd objects: no walks over all objects
        candidates = [c for plan in plans for variant, variant_cfg in variants.items()
                      for c in make_candidates(variant_cfg, source, num_classes, plan=plan, device=device,
                                               variant=variant)]
        grid = CandidateGrid(candidates, plans, len(source.reader))
        training = Training(grid)
        step_runner = StepRunner(grid, targets, cfg=cfg, precision=source.reader.precision)
        step = 0
        for epoch, batches in enumerate(epochs):
            for batch in batches:
                step += 1
                step_runner(batch, step / total_steps)
            means = step_runner.epoch_means()
            last = epoch == cfg.epochs - 1
            val = validate(source, plans, grid, targets=targets, cfg=cfg) if last or cfg.val_curve else {}
            for candidate in grid:
                candidate.val_uar = val.get(candidate.key, candidate.val_uar)
                loss, accuracy = means[candidate.key]
                training.log.append({"epoch": epoch + 1, "fold": candidate.fold, "head": candidate.name,
                                     "train_loss": loss, "train_accuracy": accuracy,
                                     "val_uar_pbv": val.get(candidate.key), "variant": candidate.variant})
            if on_epoch is not None:
                on_epoch(epoch)
    return training


def copy_draws(reader, cfg: ProbeConfig) -> list[np.ndarray] | None:
    """Per epoch, the augmented copy each clip of each video trains on [V, K] (train_copies augmented): drawn from
    the run's seed and the epoch only, so every schedule (all-folds, per-fold, one-clip or concatenated) trains a
    clip on the same copy in the same epoch."""
    if cfg.train_copies != "augmented":
        return None
    return [np.random.default_rng([cfg.seed, epoch, 2]).integers(0, reader.copies, size=(len(reader), reader.clips))
            for epoch in range(cfg.epochs)]


def validate(source: TokenSource, plans: list[FoldPlan], grid: CandidateGrid, *, targets: np.ndarray,
             cfg: ProbeConfig) -> dict[str, float]:
    """Inner-validation UAR (PBV) of the candidates of plans that have validation videos, by key; each validation
    video is read once for every plan that holds it."""
    models = list(grid)
    position = {c.key: p for p, c in enumerate(models)}
    wanted: dict[int, list[int]] = {}  # video -> positions of the models that score it
    for plan in plans:
        for v in plan.val.tolist():
            wanted.setdefault(v, []).extend(position[c.key] for c in grid.fold(plan.fold))
    if not wanted:
        return {}
    videos = sorted(wanted)
    posteriors = dict(zip(videos, video_posteriors(source, [c.model for c in models], videos, cfg=cfg,
                                                   wanted=[wanted[v] for v in videos],
                                                   modes=[(c.train_clips, cfg.test_clips) for c in models])))
    scores = {}
    for plan in plans:
        for candidate in grid.fold(plan.fold):
            p = position[candidate.key]
            preds = np.array([posteriors[v][p].sum(0).argmax() for v in plan.val.tolist()])
            scores[candidate.key] = uar(targets[plan.val], preds) if len(preds) else float("nan")
    return scores
