"""The small records that pass between a family's reader, its builder and the checks: what a checkpoint held, what
it looks like from outside (to name the right family), and how its inputs are normalised."""

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and std applied to frames in [0, 1]; part of the store's sampling attributes."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET = Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
UNIT = Normalisation((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # frames in [0, 1], as MARLIN takes them


@dataclass(frozen=True, kw_only=True)
class Weights:
    """What a family's reader got from a checkpoint: the encoder's weights in the model's key names (None where a
    library loads them), config.json, the settings the checkpoint fixes, and a note if it was label-supervised."""
    state: dict | None
    config: dict | None = None
    fixed: dict = field(default_factory=dict)
    fine_tuned: str | None = None
    notes: tuple[str, ...] = ()  # what a reader of the store should know about the choice of weights


@dataclass(frozen=True)
class Evidence:
    """A checkpoint seen from outside: config.json's model_type (directories) and its tensor names (wrapper prefixes
    stripped). Each family's `claims` reads it to say whether the checkpoint is one of its own."""
    model_type: str | None
    keys: frozenset[str]

    def has(self, *names: str) -> bool:
        return all(n in self.keys for n in names)

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.keys)


def read_json(file: Path) -> dict | None:
    """A JSON object file (config.json, preprocessor_config.json), or None where there is none to read."""
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def directory_config(path: Path) -> dict | None:
    """config.json of a Hugging Face directory, or None where there is none to read (the reader then explains)."""
    return read_json(path / "config.json")


def preprocessor_normalisation(path: Path | None, default: Normalisation) -> Normalisation:
    """The directory's own image_mean/image_std (preprocessor_config.json), else the family's."""
    config = (read_json(path / "preprocessor_config.json") if path is not None else None) or {}
    try:
        mean, std = config.get("image_mean"), config.get("image_std")
        if len(mean) == 3 and len(std) == 3:
            return Normalisation(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    except (ValueError, TypeError):
        pass
    return default
