"""Voting and metrics: PBV and MV over a video's clips, UAR (mean per-class recall), WAR (accuracy), intervals.

Axes: V videos, M clip views of a video, C classes.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

Score = Literal["uar", "war"]
Level = Literal["pbv", "mv", "clip"]  # video level by posterior-based or majority voting, or clip level


@dataclass(frozen=True)
class MetricName:
    """One key of metrics.json, e.g. uar_pbv: a score at a level."""
    score: Score
    level: Level

    @property
    def key(self) -> str:
        return f"{self.score}_{self.level}"


N_BOOT = 1000  # bootstrap resamples of every interval and paired test
SIGNIFICANCE = 0.05  # the level at which a paired difference counts as distinguishable from noise


def distinguishable(p_value: float) -> bool:
    """The one verdict on a paired test, for reports, ablations and comparisons alike."""
    return p_value < SIGNIFICANCE


def p_text(p_value: float, *, relation: bool = False) -> str:
    """A bootstrap p-value as a reader takes it: `< 0.001` where no resample of N_BOOT crossed zero, not `0.000`
    (with relation, `= 0.004` or `< 0.001`, for a sentence)."""
    if p_value == 0:
        return f"< {1 / N_BOOT:g}"
    return f"= {p_value:.3f}" if relation else f"{p_value:.3f}"


METRICS = tuple(MetricName(score, level) for level in ("pbv", "mv", "clip") for score in ("uar", "war"))
METRIC_KEYS = tuple(m.key for m in METRICS)  # uar_pbv war_pbv uar_mv war_mv uar_clip war_clip (DESIGN section 7)


def pbv(posteriors: np.ndarray) -> tuple[int, np.ndarray]:
    """Posterior-based voting: sum the clips' posteriors [M, C], take the argmax; also the normalised sum [C]."""
    total = posteriors.sum(axis=0)  # [C]
    return int(total.argmax()), total / total.sum()


def majority_vote(posteriors: np.ndarray) -> int:
    """Majority of the clips' argmax votes; ties go to the tied class with the highest summed posterior."""
    C = posteriors.shape[1]
    votes = np.bincount(posteriors.argmax(axis=1), minlength=C)  # [C]
    tied = np.flatnonzero(votes == votes.max())
    return int(tied[posteriors.sum(axis=0)[tied].argmax()])


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true (scikit-learn's balanced accuracy)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    recalls = [(y_pred[y_true == c] == c).mean() for c in np.unique(y_true)]
    return float(np.mean(recalls))


def war(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [C, C], rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, metric, *, n_boot: int = N_BOOT, seed: int = 0,
                 groups: np.ndarray | None = None) -> list[float]:
    """95% percentile interval of `metric` over videos resampled with replacement; `groups` [M] names the video
    of each row when rows are clips, so that a video's clips are resampled together."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return [float("nan"), float("nan")]
    groups = np.arange(y_true.size) if groups is None else np.asarray(groups)
    n_videos = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_videos, size=n_videos), minlength=n_videos)  # [V]
        rows = np.repeat(np.arange(y_true.size), counts[groups])
        values.append(metric(y_true[rows], y_pred[rows]))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def paired_bootstrap(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, metric, n_boot: int = N_BOOT,
                     seed: int = 0) -> dict:
    """Difference metric(a) - metric(b) on the same videos: its 95% interval and a two-sided p-value."""
    y_true, pred_a, pred_b = map(np.asarray, (y_true, pred_a, pred_b))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, y_true.size, size=(n_boot, y_true.size))
    diffs = np.array([metric(y_true[d], pred_a[d]) - metric(y_true[d], pred_b[d]) for d in draws])
    observed = metric(y_true, pred_a) - metric(y_true, pred_b)
    p_value = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    interval = [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]
    return {"difference": float(observed), "ci95": interval,
            "p_value": float(min(1.0, p_value))}


@dataclass(kw_only=True)
class FoldPredictions:
    """One fold's test results: per video, the clips' posteriors and the label."""
    fold: int
    video_ids: list[str]
    subjects: list[str]
    labels: np.ndarray  # [V]
    clip_posteriors: list[np.ndarray]  # V x [M, C]

    def video_level(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PBV predictions [V], MV predictions [V] and PBV-normalised posteriors [V, C]."""
        votes = [pbv(p) for p in self.clip_posteriors]
        pred_pbv = np.array([v[0] for v in votes], dtype=np.int64)
        pred_mv = np.array([majority_vote(p) for p in self.clip_posteriors], dtype=np.int64)
        return pred_pbv, pred_mv, np.stack([v[1] for v in votes])

    def clip_level(self) -> tuple[np.ndarray, np.ndarray]:
        labels = np.concatenate([np.full(len(p), y) for p, y in zip(self.clip_posteriors, self.labels)])
        preds = np.concatenate([p.argmax(axis=1) for p in self.clip_posteriors])
        return labels, preds

    def scores(self) -> dict[str, float]:
        pred_pbv, pred_mv, _ = self.video_level()
        clip_true, clip_pred = self.clip_level()
        return {"uar_pbv": uar(self.labels, pred_pbv), "war_pbv": war(self.labels, pred_pbv),
                "uar_mv": uar(self.labels, pred_mv), "war_mv": war(self.labels, pred_mv),
                "uar_clip": uar(clip_true, clip_pred), "war_clip": war(clip_true, clip_pred)}


def summarise(folds: list[FoldPredictions], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """metrics.json: per key {mean, std, ci95, per_fold}; intervals from a bootstrap over all test videos."""
    per_fold = [f.scores() for f in folds]
    labels = np.concatenate([f.labels for f in folds])
    levels = [f.video_level() for f in folds]
    pooled = {"pbv": np.concatenate([lv[0] for lv in levels]), "mv": np.concatenate([lv[1] for lv in levels])}
    clips = [f.clip_level() for f in folds]
    clip_true, clip_pred = np.concatenate([c[0] for c in clips]), np.concatenate([c[1] for c in clips])
    clip_video = np.repeat(np.arange(labels.size), [len(p) for f in folds for p in f.clip_posteriors])
    out = {}
    for name in METRICS:
        metric = uar if name.score == "uar" else war
        values = [s[name.key] for s in per_fold]
        if name.level == "clip":
            ci = bootstrap_ci(clip_true, clip_pred, metric, n_boot=n_boot, seed=seed, groups=clip_video)
        else:
            ci = bootstrap_ci(labels, pooled[name.level], metric, n_boot=n_boot, seed=seed)
        out[name.key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "ci95": ci,
                    "per_fold": [float(v) for v in values]}
    return out
