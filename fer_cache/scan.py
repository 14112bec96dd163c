"""What `fer-cache scan` reports: the adapter's videos and errors, optionally with decoded frame counts."""

from collections.abc import Callable

from fer_cache.config import DatasetConfig
from fer_cache.datasets import scan_dataset
from fer_cache.errors import DecodeError
from fer_cache.video import count_frames


def scan_with_frames(cfg: DatasetConfig, decode: bool, on_video: Callable[[], None] | None = None) -> dict:
    """{"videos", "errors"} as DESIGN section 7 specifies (a video that fails to decode is an error), plus the
    number of videos the data.yaml filters left out under "skipped"."""
    result = scan_dataset(cfg)
    videos, errors = [], [{"path": path, "reason": reason} for path, reason in result.errors]
    for item in result.videos:
        row = {"id": item.id, "path": item.path, "label": item.label, "label_name": item.label_name,
               "subject": item.subject}
        if decode:
            try:
                row["n_frames"] = count_frames(cfg.root / item.path)
            except DecodeError as exc:
                errors.append({"path": item.path, "reason": str(exc)})
                continue
            finally:
                if on_video is not None:
                    on_video()
        videos.append(row)
    return {"videos": videos, "errors": errors, "skipped": result.skipped}
