"""The candidates of a training: one probe per (fold, learning rate, weight decay) and configuration trained
together, known by key in the CandidateGrid; and the choice among a fold's candidates.

Axes: P candidates, V videos.
"""

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from fer_probe.config import ProbeConfig
from fer_probe.data.inputs import InputKind
from fer_probe.data.sampling import TokenSource
from fer_probe.probes.registry import registered
from fer_probe.training.optim import AdamW, parameter_groups


@dataclass(kw_only=True)
class FoldPlan:
    """What one fold's candidates train on: its training videos (or their inner split) and, when several
    candidates compete, the inner validation videos they are chosen on."""
    fold: int
    train: np.ndarray  # reader rows
    val: np.ndarray  # reader rows; empty with a single candidate
    seed: int  # initialisation seed of the fold's candidates


@dataclass(kw_only=True)
class Candidate:
    """One probe of the (learning rate x weight decay) grid of one fold."""
    fold: int
    name: str  # its hyperparameters, e.g. lr1e-03_wd0.01 (the column "head" of heads.json and train_log.csv)
    lr: float
    weight_decay: float
    model: nn.Module
    optimizer: AdamW
    val_uar: float | None = None  # inner-validation UAR (PBV) after the last epoch
    variant: str = ""  # which of several configurations trained together (ProbeConfig.variant); "" when alone
    train_clips: str = "all"  # its configuration's train_clips: what it trains on, and so how it scores

    @property
    def key(self) -> str:
        return f"{self.variant}/fold{self.fold}/{self.name}" if self.variant else f"fold{self.fold}/{self.name}"


class CandidateGrid:
    """Every candidate of every fold by key (`fold2/lr1e-03_wd0.01`), as dinov2's AllClassifiers. Which videos each
    candidate trains on (the membership mask [P, V]) is its one piece of index logic; selection, logging and
    scoring go by key."""

    def __init__(self, candidates: list[Candidate], plans: list[FoldPlan], videos: int):
        self.candidates = {c.key: c for c in candidates}  # in training order: plan, then lr, then wd
        train = {plan.fold: plan.train for plan in plans}
        self.member = np.zeros((len(candidates), videos), dtype=bool)  # [P, V]
        for p, candidate in enumerate(candidates):
            self.member[p, train[candidate.fold]] = True

    def __iter__(self):
        return iter(self.candidates.values())

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, key: str) -> Candidate:
        return self.candidates[key]

    def fold(self, fold: int, variant: str | None = None) -> list[Candidate]:
        return [c for c in self if c.fold == fold and (variant is None or c.variant == variant)]

    def training_on(self, videos: np.ndarray) -> dict[str, list[int]]:
        """Key -> positions in `videos` that the candidate trains on, for every candidate that has any."""
        member = self.member[:, videos]  # [P, B]
        return {key: np.flatnonzero(member[p]).tolist() for p, key in enumerate(self.candidates) if member[p].any()}


@dataclass
class Training:
    grid: CandidateGrid
    log: list[dict] = field(default_factory=list)  # per epoch and candidate: loss, accuracy, val UAR


def fresh_probe(cfg: ProbeConfig, width: int, num_classes: int, *, seed: int, device: torch.device) -> nn.Module:
    """A probe with its initial weights for this seed (Probe.create), built with its settings from the config."""
    torch.manual_seed(seed)
    kind = registered(cfg.probe)
    return kind.create(width, num_classes, kind.settings_from(cfg), device=device)


def make_candidates(cfg: ProbeConfig, source: TokenSource, num_classes: int, *, plan: FoldPlan,
                    device: torch.device, variant: str = "") -> list[Candidate]:
    """Every (lr, wd) candidate of a fold starts from the same weights: only lr and wd differ (and variants of a
    fold start from the same weights too, as they would in runs of their own)."""
    first = fresh_probe(cfg, source.reader.width, num_classes, seed=plan.seed, device=device)
    if source.kind == InputKind.POOLED:
        first.fit_standardisation(source.pooled[plan.train].reshape(-1, source.reader.width).to(device))
    out = []
    for lr in cfg.lrs:
        for wd in cfg.weight_decays:
            model = first if not out else copy.deepcopy(first)
            optimizer = AdamW(parameter_groups(model, wd), lr=lr)
            out.append(Candidate(fold=plan.fold, name=f"lr{lr:.0e}_wd{wd:g}", lr=lr, weight_decay=wd, model=model,
                                 optimizer=optimizer, variant=variant, train_clips=cfg.train_clips))
    return out


@dataclass(kw_only=True)
class Selection:
    """A fold's chosen candidate and the table of all its candidates (heads.json)."""
    chosen: Candidate
    table: list[dict]


def select(candidates: list[Candidate]) -> Selection:
    """The candidate with the best inner-validation UAR (the first on ties), and the table of all of them."""
    if len(candidates) == 1:
        only = candidates[0]
        return Selection(chosen=only, table=[{"head": only.name, "lr": only.lr, "weight_decay": only.weight_decay,
                                              "selected": True}])
    scores = [c.val_uar if c.val_uar is not None and not math.isnan(c.val_uar) else -1.0 for c in candidates]
    best = int(np.argmax(scores))
    table = [{"head": c.name, "lr": c.lr, "weight_decay": c.weight_decay, "val_uar_pbv": c.val_uar,
              "selected": i == best} for i, c in enumerate(candidates)]
    return Selection(chosen=candidates[best], table=table)
