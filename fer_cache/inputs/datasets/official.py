"""What the in-the-wild adapters (DFEW, FERV39k, MAFW) share: reading their split files as released, and turning
(clip id, label, official split) entries into videos, with every clip that a split names but the disk lacks listed
as an error, never dropped. These datasets have no subject ids: their subject column stays empty.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError
from fer_cache.inputs.datasets import CANONICAL_LABELS, ScanResult, VideoItem, add_unique
from fer_cache.labels import canonical_label, unknown_label_message


@dataclass(kw_only=True, frozen=True)
class Entry:
    """One clip of an official split file."""
    clip: str  # the official key: a 5-digit id, or FERV39k's Scene/Emotion/id
    label: str  # a canonical class name
    split: str  # "test:k" (in the test set of fold k) or "train" / "test" (a single split)
    source: str  # file and line, for messages


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a split file: UTF-8 (with or without a BOM), else GBK (MAFW's captioned files); CRLF or LF."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gbk"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DatasetError(f"{path}: neither UTF-8 nor GBK text; is it a split file of the release?")
    return [line.strip() for line in text.splitlines() if line.strip()]


def last_number(name: str) -> int | None:
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def first_existing(root: Path, candidates: tuple[str, ...], what: str, *, cfg: DatasetConfig) -> Path:
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    raise DatasetError(f"dataset '{cfg.name}' ({cfg.config_file} line {cfg.line}): no {what} under {root} (looked "
                       f"for {', '.join(candidates)}); point `root` at the unpacked release")


def canonical_or_error(name: str, where: str) -> str:
    label = canonical_label(name)
    if label is None:
        raise DatasetError(f"{where}: {unknown_label_message(name)}")
    return label


def entries_to_videos(entries: list[Entry], clip_path, root: Path, *, result: ScanResult) -> None:
    """Videos for split entries in official order; clip_path(clip) -> the path (file or frame folder) relative to
    the root. A clip listed twice with different labels, or missing on disk, is an error."""
    labels: dict[str, Entry] = {}
    seen: dict[str, str] = {}
    for entry in entries:
        earlier = labels.get(entry.clip)
        if earlier is not None:
            if earlier.label != entry.label:
                result.errors.append((clip_path(entry.clip), f"{entry.source} labels clip {entry.clip} "
                                      f"'{entry.label}', {earlier.source} '{earlier.label}'"))
            continue
        labels[entry.clip] = entry
        rel = clip_path(entry.clip)
        if not (root / rel).exists():
            result.errors.append((rel, f"named in {entry.source} but not found under the root"))
            continue
        add_unique(result, VideoItem(id=entry.clip, path=rel, label=CANONICAL_LABELS.index(entry.label),
                                     label_name=entry.label, subject="", split=entry.split), seen)


def fold_sets(files: list[Path], kind: str, cfg: DatasetConfig) -> dict[int, Path]:
    """The train or test file of each of the five folds, keyed by the last number in its name (set_3 -> 3)."""
    by_fold: dict[int, Path] = {}
    for path in files:
        fold = last_number(path.stem) if last_number(path.stem) is not None else last_number(path.parent.name)
        if fold is not None and 1 <= fold <= 5:
            by_fold.setdefault(fold, path)
    if sorted(by_fold) != [1, 2, 3, 4, 5]:
        raise DatasetError(f"dataset '{cfg.name}': found the {kind} split files of folds {sorted(by_fold) or 'none'} "
                           "under the root, expected folds 1-5 as released")
    return by_fold


def check_complements(entries: list[Entry], train: dict[int, set[str]], result: ScanResult, *, name: str) -> None:
    """Each fold's training set must be every other clip: report clips where the released files disagree."""
    everything = {e.clip for e in entries}
    for fold, clips in sorted(train.items()):
        test = {e.clip for e in entries if e.split == f"test:{fold}"}
        odd = sorted((everything - test) ^ clips)
        if odd:
            result.errors.append((f"fold {fold}", f"{name}: {len(odd)} clips are in neither or both of fold {fold}'s "
                                  f"train and test files (e.g. {', '.join(odd[:3])})"))
