"""The baselines on mean-pooled tokens: standardised with the training videos' statistics, then a linear map or an
MLP with one hidden layer of the token width.

Axes: B clips, D width, C classes.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from fer_probe.data.inputs import InputKind
from fer_probe.probes.base import Probe


@dataclass(frozen=True)
class PooledSettings:
    """The baselines have no settings: their form is their class (linear or mlp)."""


class PooledProbe(Probe):
    """Mean-pooled tokens [B, D] -> standardised -> linear or MLP -> logits [B, C]."""

    input_kind = InputKind.POOLED
    Settings = PooledSettings
    hidden_layer: ClassVar[bool] = False  # an MLP with one hidden layer of the token width, or a linear map

    def __init__(self, dim: int, num_classes: int, settings: PooledSettings = PooledSettings()):
        super().__init__()
        self._settings = settings
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        if self.hidden_layer:
            self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_classes))
        else:
            self.net = nn.Linear(dim, num_classes)

    @classmethod
    def build(cls, dim: int, num_classes: int, settings: PooledSettings) -> "PooledProbe":
        return cls(dim, num_classes, settings)

    @property
    def settings(self) -> PooledSettings:
        return self._settings

    def fit_standardisation(self, features: torch.Tensor) -> None:
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6))

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std  # [B, D]

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)  # [B, C]


class LinearProbe(PooledProbe):
    pass


class MLPProbe(PooledProbe):
    hidden_layer = True
