"""MAFW: 9,172 single-labelled clips, 11 classes, 5 official folds by clip.

root/data/frames/<id>/ face-crop frames (source frames) or root/data/clips/<id>.mp4 (source videos);
root/"Train & Test Set"/single/no_caption/set_k/{train,test}.txt (some copies rename the top folder `split`),
lines `03747.mp4 anger`, ASCII with CRLF. Classes by name: anger, disgust, fear, happiness, neutral, sadness,
surprise, contempt, anxiety, helplessness, disappointment.
"""

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError
from fer_cache.inputs.datasets import CANONICAL_LABELS, ScanResult
from fer_cache.inputs.datasets.official import (
    Entry,
    canonical_or_error,
    check_complements,
    entries_to_videos,
    first_existing,
    read_lines,
)

SPLIT_FOLDERS = ("Train & Test Set", "split")


def read_split(path, split: str) -> list[Entry]:
    entries = []
    for line, text in enumerate(read_lines(path), start=1):
        parts = text.split()
        if len(parts) < 2:
            raise DatasetError(f"{path} line {line}: expected '<id>.mp4 <label>', got '{text[:80]}'")
        clip = parts[0].rsplit(".", 1)[0] if parts[0].lower().endswith(".mp4") else parts[0]
        if not clip.isdigit():
            raise DatasetError(f"{path} line {line}: clip '{parts[0]}' is not a numbered MAFW clip")
        entries.append(Entry(clip=clip.zfill(5), label=canonical_or_error(parts[1], f"{path} line {line}"), split=split,
                             source=f"{path.parent.name}/{path.name} line {line}"))
    return entries


def scan(cfg: DatasetConfig) -> ScanResult:
    result = ScanResult(label_names=CANONICAL_LABELS)
    top = first_existing(cfg.root, SPLIT_FOLDERS, "split folder", cfg=cfg)
    sets = top / "single" / "no_caption"
    entries, train = [], {}
    for fold in range(1, 6):
        folder = sets / f"set_{fold}"
        for kind in ("train", "test"):
            if not (folder / f"{kind}.txt").is_file():
                raise DatasetError(f"dataset '{cfg.name}': {folder / f'{kind}.txt'} not found; MAFW's single-label "
                                   "split files live in single/no_caption/set_1..set_5")
        entries += read_split(folder / "test.txt", f"test:{fold}")
        train[fold] = {e.clip for e in read_split(folder / "train.txt", "train")}
    check_complements(entries, train, result, name="MAFW")
    if (cfg.source or "frames") == "frames":
        base = first_existing(cfg.root / "data", ("frames",), "frame folders (data/frames)", cfg=cfg)
        entries_to_videos(entries, lambda clip: f"{base.relative_to(cfg.root).as_posix()}/{clip}", cfg.root,
                          result=result)
    else:
        base = first_existing(cfg.root / "data", ("clips",), "clips (data/clips)", cfg=cfg)
        entries_to_videos(entries, lambda clip: f"{base.relative_to(cfg.root).as_posix()}/{clip}.mp4", cfg.root,
                          result=result)
    return result
