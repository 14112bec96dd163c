"""RAVDESS: MM-VV-EE-II-SS-RR-AA.mp4 (modality, vocal channel, emotion, intensity, statement, repetition, actor)."""

from dataclasses import dataclass, fields

from fer_cache.config import DatasetConfig
from fer_cache.inputs.datasets import RAVDESS_LABELS, ScanResult, VideoItem, add_unique, candidate_files

LABEL_NAMES = RAVDESS_LABELS  # emotion codes 01..08 in this order
VOCAL_CHANNELS = {1: "speech", 2: "song"}
SONG_EMOTIONS = {1, 2, 3, 4, 5, 6}  # RAVDESS song has neutral, calm, happy, sad, angry, fearful


@dataclass(kw_only=True, frozen=True)
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
    name = RavdessName(**dict(zip([f.name for f in fields(RavdessName)], values)))
    if name.emotion == 1 and name.intensity == 2:
        raise ValueError("neutral (emotion 01) has no strong intensity (02) in RAVDESS; the name is misspelt")
    if name.vocal_channel == 2 and name.emotion not in SONG_EMOTIONS:
        raise ValueError(f"RAVDESS song (vocal channel 02) has no {LABEL_NAMES[name.emotion - 1]} "
                         f"(emotion {name.emotion:02d}); the name is misspelt")
    return name


def folder_actor(rel: str) -> int | None:
    """The actor number of an enclosing Actor_XX folder, if there is one."""
    for part in rel.split("/")[:-1]:
        if part.lower().startswith("actor_") and part[6:].isdigit():
            return int(part[6:])
    return None


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
        actor = folder_actor(rel)
        if actor is not None and actor != name.actor:
            result.errors.append((rel, f"the name says actor {name.actor:02d} but the file is in the folder of "
                                       f"actor {actor:02d}; one of them is wrong"))
            continue
        if name.modality not in modalities or VOCAL_CHANNELS[name.vocal_channel] not in channels:
            result.skipped += 1
            continue
        label = name.emotion - 1
        add_unique(result, VideoItem(id=path.stem, path=rel, label=label, label_name=LABEL_NAMES[label],
                                     subject=str(name.actor)), seen)
    return result
