"""A CSV manifest (path,label,subject[,split]) for any other dataset or in-house data.

Labels are matched, ignoring case, onto the canonical vocabulary (`Angry`, `anger` -> angry); an unknown name is an
error with the closest known one. A `labels: [...]` entry in the config declares the whole vocabulary instead.
A path may name a video file or a folder of frame images.
"""

import csv

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError
from fer_cache.inputs.datasets import CANONICAL_LABELS, ScanResult, VideoItem, add_unique
from fer_cache.labels import canonical_label, unknown_label_message

REQUIRED = ("path", "label", "subject")


def read_rows(cfg: DatasetConfig) -> list[dict]:
    if cfg.manifest is None or not cfg.manifest.is_file():
        raise DatasetError(f"dataset '{cfg.name}': manifest {cfg.manifest} not found ({cfg.config_file} line "
                           f"{cfg.line})")
    try:
        with open(cfg.manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DatasetError(f"{cfg.manifest}: missing column(s) {', '.join(missing)}; the header must be "
                                   "path,label,subject[,split]")
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str) or v is None}
                    for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{cfg.manifest}: not a UTF-8 CSV file ({exc}); save it as CSV with columns "
                           "path,label,subject") from exc


def scan(cfg: DatasetConfig) -> ScanResult:
    rows = read_rows(cfg)
    vocabulary = tuple(cfg.labels) if cfg.labels else CANONICAL_LABELS
    result = ScanResult(label_names=vocabulary)
    seen: dict[str, str] = {}
    listed: dict[str, tuple[int, str]] = {}  # path -> (manifest line, label) of its first row
    for line, row in enumerate(rows, start=2):
        rel = row["path"]
        where = rel or f"{cfg.manifest.name} line {line}"
        if not rel or not row["subject"]:
            result.errors.append((where, f"{cfg.manifest.name} line {line}: empty path or subject"))
            continue
        label = canonical_label(row["label"], vocabulary)
        if label is None:
            result.errors.append((rel, f"{cfg.manifest.name} line {line}: "
                                       f"{unknown_label_message(row['label'], vocabulary)}"))
            continue
        path = cfg.root / rel
        if not path.exists():
            result.errors.append((rel, f"listed in {cfg.manifest.name} line {line} but not found under the root"))
            continue
        if not listed_once(result, rel, (line, label), listed=listed, manifest=cfg.manifest.name):
            continue
        video_id = path.name if path.is_dir() else path.stem
        add_unique(result, VideoItem(id=video_id, path=rel, label=vocabulary.index(label), label_name=label,
                                     subject=row["subject"], split=row.get("split", "")), seen)
    return result


def listed_once(result: ScanResult, rel: str, row: tuple[int, str], *, listed: dict[str, tuple[int, str]],
                manifest: str) -> bool:
    """A file listed twice is one video: a repeated row is reported and skipped, and so is a row that gives an
    already listed file another label (the first row's label is kept, and the message says which)."""
    key = str(rel).replace("\\", "/").strip("/")
    if key not in listed:
        listed[key] = row
        return True
    (first_line, first_label), (line, label) = listed[key], row
    if first_label == label:
        result.errors.append((rel, f"listed twice in {manifest} (lines {first_line} and {line}); remove one row"))
        return False
    result.errors.append((rel, f"listed with two labels in {manifest}: {first_label} (line {first_line}) and "
                               f"{label} (line {line}); {first_label} is kept: delete the wrong row"))
    return False
