"""Dataset adapters: a folder (or manifest) in, a deterministic list of labelled videos and parse errors out."""

from dataclasses import dataclass, field
from pathlib import Path

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError
from fer_cache.labels import CANONICAL_LABELS, RAVDESS_LABELS  # noqa: F401 - the vocabulary adapters speak

ADAPTER_MODULES = {"ravdess": "ravdess", "crema_d": "crema_d", "manifest": "manifest", "dfew": "dfew",
                   "ferv39k": "ferv39k", "mafw": "mafw"}
VIDEO_EXTENSIONS = (".mp4", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(kw_only=True, frozen=True)
class VideoItem:
    id: str
    path: str  # relative to the dataset root
    label: int  # index into the adapter's label names
    label_name: str
    subject: str
    split: str = ""  # official split membership, e.g. "test:3" (test set of fold 3) or "train"; "" when none


@dataclass(kw_only=True)
class ScanResult:
    label_names: tuple[str, ...]
    videos: list[VideoItem] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: int = 0  # parsed fine but excluded by a filter of data.yaml


def candidate_files(root: Path, result: ScanResult) -> list[Path]:
    """Every file under root with a video extension, sorted; folders named like videos are errors."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            result.errors.append((rel, "is a directory, not a video file"))
        elif not path.exists():
            result.errors.append((rel, "dangling link: its target does not exist"))
        else:
            found.append(path)
    return found


def add_unique(result: ScanResult, item: VideoItem, seen: dict[str, str]) -> None:
    """Video ids are file stems and must be unique within a dataset."""
    if item.id in seen:
        result.errors.append((item.path, f"duplicate video id '{item.id}' (also {seen[item.id]}); rename one"))
        return
    seen[item.id] = item.path
    result.videos.append(item)


def scan_dataset(cfg: DatasetConfig) -> ScanResult:
    """The videos of one data.yaml dataset entry, in a fixed order."""
    if not cfg.root.is_dir():
        raise DatasetError(f"dataset '{cfg.name}': root {cfg.root} is not a folder ({cfg.config_file} line "
                           f"{cfg.line}); download the dataset there or change `root`")
    import importlib
    if cfg.adapter not in ADAPTER_MODULES:
        raise DatasetError(f"dataset '{cfg.name}': unknown adapter '{cfg.adapter}'")
    return importlib.import_module(f"fer_cache.inputs.datasets.{ADAPTER_MODULES[cfg.adapter]}").scan(cfg)
