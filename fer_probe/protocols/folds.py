"""Subject-independent folds: seeded, stratified where possible, saved as folds.json and reusable."""

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from fer_probe.errors import FoldsError, NoSubjectsError

FoldCount = int | Literal["official"]  # subject folds, or the dataset's official folds


@dataclass(kw_only=True, frozen=True)
class Fold:
    test_subjects: tuple[str, ...]
    train_subjects: tuple[str, ...]
    test_videos: tuple[str, ...] = ()  # official folds are by clip: the video ids themselves
    train_videos: tuple[str, ...] = ()

    @property
    def by_video(self) -> bool:
        return bool(self.test_videos)


def official_folds(ids: list[str], splits: list[str] | None) -> list[Fold]:
    """The dataset's own folds from its videos' split membership: "test:k" (the test set of fold k; its training
    set is every other video) or "train"/"test" (one fixed split)."""
    if splits is None or not any(splits):
        raise FoldsError("the store records no official splits (only the DFEW, FERV39k and MAFW adapters, or a "
                         "manifest with a split column, do); use subject folds")
    values = sorted(set(splits))
    if all(v.startswith("test:") and v[5:].isdigit() for v in values):
        folds = []
        for value in sorted(values, key=lambda v: int(v[5:])):
            test = tuple(i for i, s in zip(ids, splits) if s == value)
            train = tuple(i for i, s in zip(ids, splits) if s != value)
            folds.append(Fold(test_subjects=(), train_subjects=(), test_videos=test, train_videos=train))
        return folds
    if set(values) == {"test", "train"}:
        return [Fold(test_subjects=(), train_subjects=(),
                     test_videos=tuple(i for i, s in zip(ids, splits) if s == "test"),
                     train_videos=tuple(i for i, s in zip(ids, splits) if s == "train"))]
    raise FoldsError(f"official splits must be test:1..test:k or train/test, found {', '.join(values[:5])}")


def make_folds(subjects: list[str], labels: np.ndarray, n_folds: int, *, seed: int) -> list[Fold]:
    """StratifiedGroupKFold over subjects; no subject is ever in both train and test."""
    unique = sorted(set(subjects), key=_subject_key)
    if "" in unique:
        raise NoSubjectsError("the store has videos without subject ids (DFEW, FERV39k and MAFW have none), so "
                              "subject-independent folds cannot be made; use the dataset's official folds")
    if len(unique) < 2:
        raise FoldsError(f"the store has {len(unique)} subject; subject-independent cross-validation needs at least "
                         "2 subjects (use a folds file or another store)")
    if n_folds < 2:
        raise FoldsError(f"the number of folds must be at least 2, got {n_folds}")
    if n_folds > len(unique):
        raise FoldsError(f"{n_folds} folds are more than the {len(unique)} subjects in the store; use at most "
                         f"{len(unique)} folds")
    largest = int(np.bincount(labels).max()) if len(labels) else 0
    if n_folds > largest:
        raise FoldsError(f"{n_folds} folds are more than the {largest} videos of the largest class; use at most "
                         f"{largest} folds")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    groups = np.array(subjects, dtype=object)
    folds = []
    with warnings.catch_warnings():  # sklearn warns when a class has fewer members than folds; stratify as it can
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
    for _, test_idx in splits:
        test = sorted(set(groups[test_idx].tolist()), key=_subject_key)
        train = [s for s in unique if s not in set(test)]
        folds.append(Fold(test_subjects=tuple(test), train_subjects=tuple(train)))
    return folds


def _subject_key(subject: str):
    return (0, int(subject), "") if subject.isdigit() else (1, 0, subject)


def save_folds(folds: list[Fold], path: Path, seed: int | None = None) -> None:
    entries = []
    for f in folds:
        entry = {"test_subjects": list(f.test_subjects), "train_subjects": list(f.train_subjects)}
        if f.by_video:
            entry |= {"test_videos": list(f.test_videos), "train_videos": list(f.train_videos)}
        entries.append(entry)
    payload = {"folds": entries}
    if any(f.by_video for f in folds):
        payload["official"] = True
    if seed is not None:
        payload["seed"] = seed
    path.write_text(json.dumps(payload, indent=1))


def load_folds(path: Path, subjects: list[str], ids: list[str] | None = None) -> list[Fold]:
    """Read a folds.json and check it against the store: disjoint, known subjects (or videos), at least one fold."""
    if not path.is_file():
        raise FoldsError(f"folds file not found: {path}")
    try:
        raw = json.loads(path.read_text())
        entries = raw["folds"]
        folds = [Fold(test_subjects=tuple(str(s) for s in e["test_subjects"]),
                      train_subjects=tuple(str(s) for s in e["train_subjects"]),
                      test_videos=tuple(str(v) for v in e.get("test_videos", ())),
                      train_videos=tuple(str(v) for v in e.get("train_videos", ())))
                 for e in entries]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FoldsError(f"{path}: expected {{\"folds\": [{{\"test_subjects\": [...], \"train_subjects\": "
                         f"[...]}}]}} ({type(exc).__name__}: {exc})") from exc
    known = set(subjects)
    for i, fold in enumerate(folds):
        if fold.by_video:
            check_video_fold(path, i, fold, known=set(ids or []))
            continue
        leaked = sorted(set(fold.test_subjects) & set(fold.train_subjects))
        if leaked:
            raise FoldsError(f"{path}: fold {i} has subject(s) {', '.join(leaked)} in both train and test; "
                             "folds must be subject-disjoint")
        unknown = sorted((set(fold.test_subjects) | set(fold.train_subjects)) - known)
        if unknown:
            raise FoldsError(f"{path}: fold {i} names subject(s) {', '.join(unknown[:5])} that the store does not "
                             "have; was the file made for another dataset?")
        if not fold.test_subjects or not fold.train_subjects:
            raise FoldsError(f"{path}: fold {i} has an empty train or test side")
    if len(folds) < 1:
        raise FoldsError(f"{path}: no folds")
    return folds


def check_video_fold(path: Path, i: int, fold: Fold, *, known: set[str]) -> None:
    leaked = sorted(set(fold.test_videos) & set(fold.train_videos))
    if leaked:
        raise FoldsError(f"{path}: fold {i} has video(s) {', '.join(leaked[:5])} in both train and test")
    unknown = sorted((set(fold.test_videos) | set(fold.train_videos)) - known)
    if unknown:
        raise FoldsError(f"{path}: fold {i} names video(s) {', '.join(unknown[:5])} that the store does not have; "
                         "was the file made for another dataset?")


def inner_split(subjects: list[str], labels: np.ndarray, indices: np.ndarray, *, seed: int,
                fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A subject-disjoint validation split of a training fold, for choosing among candidates (never the test fold).
    Videos without a subject id (in-the-wild datasets) are each their own group: a split by clip."""
    groups = np.array([subjects[i] or f"video {i}" for i in indices], dtype=object)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise FoldsError("a training fold needs at least 2 subjects to choose among candidates on a validation split")
    n_splits = max(2, min(n_groups, round(1 / fraction)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            train_idx, val_idx = next(splitter.split(np.zeros(len(indices)), labels[indices], groups))
        except ValueError as exc:
            raise FoldsError(f"cannot split a training fold of {n_groups} subjects for choosing among candidates "
                             f"({exc}); train one learning rate and weight decay, or use more subjects") from exc
    return indices[train_idx], indices[val_idx]


def fold_indices(subjects: list[str], fold: Fold, ids: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows) of a fold, by subject or, for official folds, by video id."""
    if fold.by_video:
        test_ids, train_ids = set(fold.test_videos), set(fold.train_videos)
        return (np.flatnonzero([i in train_ids for i in ids]), np.flatnonzero([i in test_ids for i in ids]))
    test, train = set(fold.test_subjects), set(fold.train_subjects)
    subject_array = np.array(subjects, dtype=object)
    return (np.flatnonzero([s in train for s in subject_array]), np.flatnonzero([s in test for s in subject_array]))
