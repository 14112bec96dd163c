"""A new probe is one class and one registry line: a throwaway probe registered here runs through cv unchanged."""

import json

import torch
import torch.nn as nn

from fer_probe import registry
from fer_probe.config import ProbeConfig
from fer_probe.cv import run_cv
from fer_probe.probes import Probe
from tests.helpers import write_planted_store


class ThrowawayProbe(Probe):
    """The mean over tokens, then a linear map: nothing else in the package knows it."""

    @classmethod
    def build(cls, dim, num_classes, **settings):
        return cls(dim, num_classes)

    def __init__(self, dim, num_classes):
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1) * 10  # [B, N, D] -> [B, D], scaled up for a quick fit

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled)


def test_a_registered_probe_runs_through_cv(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.PROBES, "throwaway", "tests.fer_probe.test_registry:ThrowawayProbe")
    store = write_planted_store(tmp_path / "s.zarr", signal=2.0)
    cfg = ProbeConfig.from_recipe("fast", probe="throwaway", epochs=20, device="cpu", lrs=(1e-2,))
    result = run_cv(str(store), tmp_path / "run", cfg, n_folds=2)
    assert result.metrics["uar_pbv"]["mean"] > 0.5  # 4 classes: chance 0.25
    assert json.loads((tmp_path / "run" / "config.json").read_text())["probe"]["probe"] == "throwaway"
    assert "attention heads" not in " ".join(result.notes)  # heads apply to attentive probes only
    assert (tmp_path / "run" / "weights" / "fold0.safetensors").is_file()
