"""What `fer-cache scan` reports: the adapter's videos and errors, optionally with decoded frame counts, and how
many videos each class and subject has."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from fer_cache.config import DatasetConfig
from fer_cache.errors import DecodeError
from fer_cache.inputs.datasets import scan_dataset
from fer_cache.inputs.video import count_frames


@dataclass(kw_only=True)
class ScanReport:
    """What `fer-cache scan` shows; `videos` and `errors` are the rows of the scan --json contract."""
    videos: list[dict]  # id, path, label, label_name, subject[, split][, n_frames]
    errors: list[dict]  # path, reason (a video that fails to decode is an error)
    skipped: int = 0  # left out by the dataset's filters
    per_class: dict[str, int] = field(default_factory=dict)
    per_subject: dict[str, int] = field(default_factory=dict)

    @property
    def splits(self) -> bool:
        """Whether the videos carry official splits."""
        return any("split" in v for v in self.videos)

    def as_json(self) -> dict:
        return {"videos": self.videos, "errors": self.errors}


def scan_with_frames(cfg: DatasetConfig, decode: bool,
                     on_video: Callable[[int, int], None] | None = None) -> ScanReport:
    """The adapter's videos and errors, with decoded frame counts when `decode`; on_video(done, total) reports
    decoding progress."""
    result = scan_dataset(cfg)
    videos, errors = [], [{"path": path, "reason": reason} for path, reason in result.errors]
    for done, item in enumerate(result.videos, start=1):
        row = {"id": item.id, "path": item.path, "label": item.label, "label_name": item.label_name,
               "subject": item.subject}
        if item.split:
            row["split"] = item.split
        if decode:
            try:
                row["n_frames"] = count_frames(cfg.root / item.path)
            except DecodeError as exc:
                errors.append({"path": item.path, "reason": str(exc)})
                continue
            finally:
                if on_video is not None:
                    on_video(done, len(result.videos))
        videos.append(row)
    per_class = Counter(v["label_name"] for v in videos)
    per_subject = Counter(v["subject"] for v in videos)
    return ScanReport(videos=videos, errors=errors, skipped=result.skipped,
                      per_class={name: per_class[name] for name in result.label_names if per_class[name]},
                      per_subject=dict(sorted(per_subject.items(), key=lambda kv: (len(kv[0]), kv[0]))))
