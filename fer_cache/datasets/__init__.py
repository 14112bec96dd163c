"""Dataset adapters: a folder (or manifest) in, a deterministic list of labelled videos and parse errors out."""

from dataclasses import dataclass, field
from pathlib import Path

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError

# The canonical vocabulary: RAVDESS names in RAVDESS order. Cross-dataset mapping goes by these names.
CANONICAL_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
VIDEO_EXTENSIONS = (".mp4", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class VideoItem:
    id: str
    path: str  # relative to the dataset root
    label: int  # index into the adapter's label names
    label_name: str
    subject: str


@dataclass
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
        raise DatasetError(f"dataset '{cfg.name}': root {cfg.root} is not a folder (data.yaml line {cfg.line}); "
                           "download the dataset there or change `root`")
    if cfg.adapter == "ravdess":
        from fer_cache.datasets.ravdess import scan
    elif cfg.adapter == "crema_d":
        from fer_cache.datasets.crema_d import scan
    elif cfg.adapter == "manifest":
        from fer_cache.datasets.manifest import scan
    else:
        raise DatasetError(f"dataset '{cfg.name}': unknown adapter '{cfg.adapter}'")
    return scan(cfg)
