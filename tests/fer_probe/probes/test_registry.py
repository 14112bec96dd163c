"""A new probe is one class and one registry line: a throwaway probe registered here, with a setting of its own,
runs through cv unchanged, and its setting is saved with its weights and shown by the report."""

import json
from dataclasses import dataclass

import torch
import torch.nn as nn

from fer_probe.config import ProbeConfig
from fer_probe.probes import registry
from fer_probe.probes.base import Probe
from fer_probe.protocols.cv import run_cv
from fer_probe.results.outputs import read_probe
from fer_probe.results.report import write_report
from tests.helpers import write_planted_store


@dataclass(frozen=True)
class ThrowawaySettings:
    gain: float = 10.0  # a setting no other file knows


class ThrowawayProbe(Probe):
    """The mean over tokens, then a linear map: nothing else in the package knows it."""

    Settings = ThrowawaySettings

    @classmethod
    def build(cls, dim, num_classes, settings):
        return cls(dim, num_classes, settings)

    def __init__(self, dim, num_classes, settings=ThrowawaySettings()):
        super().__init__()
        self._settings = settings
        self.linear = nn.Linear(dim, num_classes)

    @property
    def settings(self):
        return self._settings

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1) * self._settings.gain  # [B, N, D] -> [B, D], scaled up for a quick fit

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled)


def test_a_registered_probe_runs_through_cv(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.PROBES, "throwaway", "tests.fer_probe.probes.test_registry:ThrowawayProbe")
    store = write_planted_store(tmp_path / "s.zarr", signal=2.0)
    cfg = ProbeConfig.from_recipe("fast", probe="throwaway", epochs=20, device="cpu", lrs=(1e-2,))
    result = run_cv(str(store), tmp_path / "run", cfg, n_folds=2)
    assert result.metrics["uar_pbv"]["mean"] > 0.5  # 4 classes: chance 0.25
    assert json.loads((tmp_path / "run" / "config.json").read_text())["probe"]["probe"] == "throwaway"
    assert "attention heads" not in " ".join(result.notes)  # heads apply to attentive probes only
    probe, meta = read_probe(tmp_path / "run" / "weights" / "fold0.safetensors")
    assert isinstance(probe, ThrowawayProbe) and probe.settings == ThrowawaySettings() and meta["probe"] == "throwaway"
    write_report(tmp_path / "run")
    assert "settings: gain 10.0" in (tmp_path / "run" / "report.md").read_text()
