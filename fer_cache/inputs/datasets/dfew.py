"""DFEW: 11,697 single-labelled movie clips, 7 classes, 5 official folds by clip.

root/Clip/clip_224x224/<id>/ face-crop frames (source frames) or root/Clip/original/<id>.mp4 (source videos);
root/EmoLabel_DataSplit/{train,test}(single-labeled)/set_k.csv with header video_name,label: ids unpadded
(2522 -> 02522), labels 1 Happy 2 Sad 3 Neutral 4 Angry 5 Surprise 6 Disgust 7 Fear (0-based copies are recognised).
"""

import csv
import io

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError
from fer_cache.inputs.datasets import CANONICAL_LABELS, ScanResult
from fer_cache.inputs.datasets.official import (
    Entry,
    canonical_or_error,
    check_complements,
    entries_to_videos,
    first_existing,
    fold_sets,
    read_lines,
)

CODES = ("happy", "sad", "neutral", "angry", "surprised", "disgust", "fearful")  # label 1..7
FRAME_FOLDERS = ("clip_224x224", "jpg_256", "jpg_224", "clip_224x224_16f")  # release name, then known renames


def read_split(path, fold: int, kind: str) -> list[Entry]:
    lines = read_lines(path)
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["video_name", "label"]:
        raise DatasetError(f"{path}: expected the header video_name,label of DFEW's split files")
    values = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            values.append((int(row[0]), int(row[1]), line))
        except (ValueError, IndexError) as exc:
            raise DatasetError(f"{path} line {line}: expected video_name,label as two integers, got {row}") from exc
    zero_based = any(label == 0 for _, label, _ in values)  # converted copies shift the released 1..7 down by one
    entries = []
    for clip, label, line in values:
        code = label + 1 if zero_based else label
        if not 1 <= code <= 7:
            raise DatasetError(f"{path} line {line}: label {label} is outside DFEW's 1-7")
        split = f"test:{fold}" if kind == "test" else "train"
        entries.append(Entry(clip=f"{clip:05d}", label=canonical_or_error(CODES[code - 1], f"{path} line {line}"),
                             split=split,
                             source=f"{path.name} line {line}"))
    return entries


def scan(cfg: DatasetConfig) -> ScanResult:
    result = ScanResult(label_names=CANONICAL_LABELS)
    splits = cfg.root / "EmoLabel_DataSplit"
    if not splits.is_dir():
        raise DatasetError(f"dataset '{cfg.name}': no EmoLabel_DataSplit folder under {cfg.root}; point `root` at "
                           "the unpacked DFEW release")
    files = sorted(splits.rglob("*.csv"))
    test = fold_sets([p for p in files if "test" in p.relative_to(splits).as_posix().lower()], "test", cfg)
    train = fold_sets([p for p in files if "train" in p.relative_to(splits).as_posix().lower()], "train", cfg)
    entries = [e for fold in range(1, 6) for e in read_split(test[fold], fold, "test")]
    train_sets = {fold: {e.clip for e in read_split(train[fold], fold, "train")} for fold in range(1, 6)}
    check_complements(entries, train_sets, result, name="DFEW")
    if (cfg.source or "frames") == "frames":
        folder = first_existing(cfg.root / "Clip", FRAME_FOLDERS, "face-crop frame folders", cfg=cfg)
        base = folder.relative_to(cfg.root).as_posix()
        entries_to_videos(entries, lambda clip: f"{base}/{clip}", cfg.root, result=result)
    else:
        base = first_existing(cfg.root / "Clip", ("original",), "original videos", cfg=cfg).relative_to(cfg.root)
        entries_to_videos(entries, lambda clip: f"{base.as_posix()}/{clip}.mp4", cfg.root, result=result)
    return result
