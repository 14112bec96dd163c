"""A CSV manifest (path,label,subject[,split]) for any other dataset: DFEW, MAFW, in-house data."""

import csv

from fer_cache.config import DatasetConfig
from fer_cache.datasets import CANONICAL_LABELS, ScanResult, VideoItem, add_unique
from fer_cache.errors import DatasetError

REQUIRED = ("path", "label", "subject")


def read_rows(cfg: DatasetConfig) -> list[dict]:
    if cfg.manifest is None or not cfg.manifest.is_file():
        raise DatasetError(f"dataset '{cfg.name}': manifest {cfg.manifest} not found (data.yaml line {cfg.line})")
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


def label_order(cfg: DatasetConfig, rows: list[dict]) -> tuple[str, ...]:
    """Fixed order: `labels:` from data.yaml, else canonical order if every label is canonical, else sorted."""
    if cfg.labels:
        return cfg.labels
    names = {row["label"] for row in rows if row["label"]}
    if names <= set(CANONICAL_LABELS):
        return CANONICAL_LABELS
    return tuple(sorted(names))


def scan(cfg: DatasetConfig) -> ScanResult:
    rows = read_rows(cfg)
    result = ScanResult(label_names=label_order(cfg, rows))
    seen: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        rel = row["path"]
        where = rel or f"{cfg.manifest.name} line {line}"
        if not rel or not row["subject"]:
            result.errors.append((where, f"{cfg.manifest.name} line {line}: empty path or subject"))
            continue
        if row["label"] not in result.label_names:
            result.errors.append((rel, f"label '{row['label']}' is not one of {', '.join(result.label_names)}"))
            continue
        path = cfg.root / rel
        if path.is_dir():
            result.errors.append((rel, "is a directory, not a video file"))
            continue
        if not path.is_file():
            result.errors.append((rel, f"listed in {cfg.manifest.name} line {line} but not found under the root"))
            continue
        stem = path.stem
        add_unique(result, VideoItem(id=stem, path=rel, label=result.label_names.index(row["label"]),
                                     label_name=row["label"], subject=row["subject"]), seen)
    return result
