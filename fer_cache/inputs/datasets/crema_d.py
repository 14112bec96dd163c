"""CREMA-D: AAAA_SSS_EEE_LL.flv (actor 1001-1091, sentence, emotion, level)."""

from fer_cache.config import DatasetConfig
from fer_cache.inputs.datasets import CANONICAL_LABELS, ScanResult, VideoItem, add_unique, candidate_files

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LABEL_NAMES = tuple(name for name in CANONICAL_LABELS if name in EMOTIONS.values())
SENTENCES = {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
LEVELS = {"LO", "MD", "HI", "XX", "X"}


def parse_name(stem: str) -> tuple[str, str]:
    """(subject, label name) of a CREMA-D stem; ValueError says which field is wrong."""
    parts = stem.split("_")
    if len(parts) != 4:
        raise ValueError("name does not follow CREMA-D AAAA_SSS_EEE_LL (four fields joined by _)")
    actor, sentence, emotion, level = parts
    if not (actor.isdigit() and 1001 <= int(actor) <= 1091):
        raise ValueError(f"actor '{actor}' is outside 1001-1091")
    if sentence not in SENTENCES:
        raise ValueError(f"sentence code '{sentence}' is not one of the 12 CREMA-D sentences")
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion code '{emotion}' is not one of {', '.join(sorted(EMOTIONS))}")
    if level not in LEVELS:
        raise ValueError(f"level '{level}' is not one of LO, MD, HI, XX")
    return str(int(actor)), EMOTIONS[emotion]


def scan(cfg: DatasetConfig) -> ScanResult:
    result = ScanResult(label_names=LABEL_NAMES)
    seen: dict[str, str] = {}
    for path in candidate_files(cfg.root, result):
        rel = path.relative_to(cfg.root).as_posix()
        try:
            subject, label_name = parse_name(path.stem)
        except ValueError as exc:
            result.errors.append((rel, str(exc)))
            continue
        add_unique(result, VideoItem(id=path.stem, path=rel, label=LABEL_NAMES.index(label_name),
                                     label_name=label_name, subject=subject), seen)
    return result
