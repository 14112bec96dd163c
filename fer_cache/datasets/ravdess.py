"""RAVDESS: MM-VV-EE-II-SS-RR-AA.mp4 (modality, vocal channel, emotion, intensity, statement, repetition, actor)."""

from dataclasses import dataclass

from fer_cache.config import DatasetConfig
from fer_cache.datasets import CANONICAL_LABELS, ScanResult, VideoItem, add_unique, candidate_files

LABEL_NAMES = CANONICAL_LABELS  # emotion codes 01..08 in this order
VOCAL_CHANNELS = {1: "speech", 2: "song"}


@dataclass(frozen=True)
class RavdessName:
    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int


def parse_name(stem: str) -> RavdessName:
    """Parse a RAVDESS file stem; ValueError says which field is wrong."""
    parts = stem.split("-")
    if len(parts) != 7 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError("name does not follow RAVDESS MM-VV-EE-II-SS-RR-AA (seven two-digit fields)")
    values = [int(p) for p in parts]
    ranges = [("modality", 1, 3), ("vocal channel", 1, 2), ("emotion", 1, 8), ("intensity", 1, 2),
              ("statement", 1, 2), ("repetition", 1, 2), ("actor", 1, 24)]
    for value, (name, low, high) in zip(values, ranges):
        if not low <= value <= high:
            raise ValueError(f"{name} code {value:02d} is outside {low:02d}-{high:02d}")
    return RavdessName(*values)


def scan(cfg: DatasetConfig) -> ScanResult:
    result = ScanResult(label_names=LABEL_NAMES)
    modalities = set(cfg.modality or (1, 2))
    channels = set(cfg.vocal_channel or ("speech",))
    seen: dict[str, str] = {}
    for path in candidate_files(cfg.root, result):
        rel = path.relative_to(cfg.root).as_posix()
        try:
            name = parse_name(path.stem)
        except ValueError as exc:
            result.errors.append((rel, str(exc)))
            continue
        if name.modality not in modalities or VOCAL_CHANNELS[name.vocal_channel] not in channels:
            result.skipped += 1
            continue
        label = name.emotion - 1
        add_unique(result, VideoItem(id=path.stem, path=rel, label=label, label_name=LABEL_NAMES[label],
                                     subject=str(name.actor)), seen)
    return result
