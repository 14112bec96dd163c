"""FERV39k: 38,935 clips of 22 scenes, 7 classes, one official train/test split by clip.

root/2_ClipsforFaceCrop/<Scene>/<Emotion>/<id>/ face-crop frames; root/4_setups/All_scenes/{train,test}_All.csv
without header, lines `Scene/Emotion/id Emotion`. Ids repeat across folders, so a video's id is its whole path key.
"""

from fer_cache.config import DatasetConfig
from fer_cache.errors import DatasetError
from fer_cache.inputs.datasets import CANONICAL_LABELS, ScanResult
from fer_cache.inputs.datasets.official import Entry, canonical_or_error, entries_to_videos, read_lines

FRAMES = "2_ClipsforFaceCrop"


def read_split(path, split: str) -> list[Entry]:
    entries = []
    for line, text in enumerate(read_lines(path), start=1):
        parts = text.split()
        if len(parts) != 2 or parts[0].count("/") != 2:
            raise DatasetError(f"{path} line {line}: expected 'Scene/Emotion/id Emotion', got '{text[:80]}'")
        key, emotion = parts
        folder_emotion = key.split("/")[1]
        if folder_emotion.lower() != emotion.lower():
            raise DatasetError(f"{path} line {line}: the label {emotion} differs from the folder {folder_emotion}")
        entries.append(Entry(clip=key, label=canonical_or_error(emotion, f"{path} line {line}"), split=split,
                             source=f"{path.name} line {line}"))
    return entries


def scan(cfg: DatasetConfig) -> ScanResult:
    result = ScanResult(label_names=CANONICAL_LABELS)
    setups = cfg.root / "4_setups" / "All_scenes"
    files = {split: setups / f"{split}_All.csv" for split in ("train", "test")}
    for path in files.values():
        if not path.is_file():
            raise DatasetError(f"dataset '{cfg.name}': {path} not found; point `root` at the folder that holds "
                               "2_ClipsforFaceCrop/ and 4_setups/")
    if not (cfg.root / FRAMES).is_dir():
        raise DatasetError(f"dataset '{cfg.name}': no {FRAMES} folder under {cfg.root}")
    entries = read_split(files["train"], "train") + read_split(files["test"], "test")
    entries_to_videos(entries, lambda key: f"{FRAMES}/{key}", cfg.root, result=result)
    return result
