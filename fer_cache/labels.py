"""The canonical label vocabulary every adapter speaks, and the matching of dataset label names onto it.

The RAVDESS names in RAVDESS order come first; the classes the in-the-wild datasets add (MAFW) follow. Cross-dataset
mapping goes by these names, so `fear`, `Fear` and `fearful` must all land on one class.
"""

import difflib

RAVDESS_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
CANONICAL_LABELS = RAVDESS_LABELS + ("contempt", "anxiety", "helplessness", "disappointment")
ALIASES = {  # other spellings in dataset releases -> canonical name
    "neutrality": "neutral", "happiness": "happy", "joy": "happy", "sadness": "sad", "anger": "angry",
    "fear": "fearful", "disgusted": "disgust", "surprise": "surprised",
}


def canonical_label(name: str, vocabulary: tuple[str, ...] = CANONICAL_LABELS) -> str | None:
    """The canonical name of `name` (case and surrounding space ignored, aliases resolved), or None."""
    key = name.strip().lower()
    key = ALIASES.get(key, key) if vocabulary is CANONICAL_LABELS else key
    for label in vocabulary:
        if label.lower() == key:
            return label
    return None


def unknown_label_message(name: str, vocabulary: tuple[str, ...] = CANONICAL_LABELS) -> str:
    """'label 'nuetral' is not a known class; did you mean neutral?' (or the whole vocabulary)."""
    candidates = {label.lower(): label for label in vocabulary}
    if vocabulary is CANONICAL_LABELS:
        candidates |= {alias: target for alias, target in ALIASES.items()}
    close = difflib.get_close_matches(name.strip().lower(), list(candidates), n=1, cutoff=0.6)
    hint = f"did you mean {candidates[close[0]]}?" if close else f"use one of: {', '.join(vocabulary)}"
    return f"label '{name}' is not a known class; {hint}"


def canonical_order(names: list[str]) -> list[str]:
    """Class names in canonical order; names outside the vocabulary keep their order after it."""
    known = [n for n in CANONICAL_LABELS if n in names]
    return known + [n for n in names if n not in CANONICAL_LABELS]
