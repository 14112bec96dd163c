"""PNG figures: confusion matrices, training curves, ablations and video-level embedding maps (matplotlib, Agg).

Every class has one colour in every figure (its place in the canonical vocabulary), so `happy` looks the same
with and without --classes and across datasets.
"""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_cache.labels import CANONICAL_LABELS
from fer_probe.errors import FerProbeError


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise FerProbeError("plots need matplotlib: pip install 'fer-jepa[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def class_colour(name: str, names: list[str]):
    """A fixed colour per class: canonical classes by their vocabulary index, others after them."""
    import matplotlib
    palette = matplotlib.colormaps["tab20"].colors
    index = CANONICAL_LABELS.index(name) if name in CANONICAL_LABELS else len(CANONICAL_LABELS) + names.index(name)
    return palette[(2 * index) % 20 if index < 10 else (2 * index + 1) % 20]


def _save(fig, path: Path) -> Path:
    """The figure under a temporary name, then renamed: a full disk leaves no truncated PNG, and says so in one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written_whole(path, lambda partial: fig.savefig(partial, dpi=120, format="png"))
    finally:
        _pyplot().close(fig)
    return path


def written_whole(path: Path, write: Callable[[Path], object]) -> None:
    """`write` into PATH.partial, then rename it to PATH; on an OSError nothing is left behind and the error is one
    line naming the file."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise FerProbeError(f"cannot write {path}: {exc.strerror or exc}; free space or write the run elsewhere") \
            from exc


def confusion_png(matrix: np.ndarray, class_names: list[str], path: Path, *, title: str) -> Path:
    """Rows normalised by true class (recall on the diagonal), counts in brackets; a class with no test videos
    gets a blank row marked 'no test videos' instead of zeros."""
    plt = _pyplot()
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.full(matrix.shape, np.nan), where=totals > 0)
    size = 1.2 + 0.75 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size + 0.4))
    image = ax.imshow(np.ma.masked_invalid(normalised), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), [f"{n} ({int(t)})" for n, t in zip(class_names, totals[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class (test videos)")
    ax.set_title(title, fontsize=9)
    for i in range(matrix.shape[0]):
        if totals[i, 0] == 0:
            ax.text((len(class_names) - 1) / 2, i, "no test videos", ha="center", va="center", fontsize=7,
                    color="grey")
            continue
        for j in range(matrix.shape[1]):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{normalised[i, j]:.2f}\n({matrix[i, j]})", ha="center", va="center", fontsize=7,
                    color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    return _save(fig, path)


def curves_png(log: list[dict], path: Path, title: str, *, chance: float | None = None) -> Path:
    """Training loss, training accuracy and (when candidates were chosen) validation UAR per epoch, one line per
    fold and candidate, chance dotted on the accuracy and UAR panels; the legend below the panels, never over one."""
    plt = _pyplot()
    keys = [("train_loss", "mean training loss"), ("train_accuracy", "training accuracy"),
            ("val_uar_pbv", "inner-validation UAR (PBV)")]
    keys = [(k, label) for k, label in keys if any(row.get(k) not in (None, "") for row in log)]
    series = sorted({(int(row["fold"]), row["head"]) for row in log})
    several = len({head for _, head in series}) > 1
    columns = max(1, 2 * len(keys))
    legend_rows = -(-(len(series) + (chance is not None)) // columns)
    height = 3.4 + 0.2 * legend_rows  # inches: the panels keep theirs, the legend gets its own
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), height), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys):
        for fold, head in series:
            rows = [r for r in log if int(r["fold"]) == fold and r["head"] == head and r.get(key) not in (None, "")]
            name = f"fold {fold}" + (f" {head}" if several else "")
            ax.plot([int(r["epoch"]) for r in rows], [float(r[key]) for r in rows], marker=".", label=name)
        if chance is not None and key != "train_loss":
            ax.axhline(chance, color="grey", linestyle=":", label=f"chance {chance:.3f}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, names = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, ncol=columns, loc="lower center", frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, (0.2 * legend_rows + 0.1) / height, 1, 1))
    return _save(fig, path)


def ablation_png(summary, path: Path, title: str, *, chance: float) -> Path:
    """Left: UAR (PBV) of every variant with its 95% bootstrap interval; right: paired differences A - B."""
    plt = _pyplot()
    variants, comparisons = summary.variants, summary.comparisons
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * max(len(variants), len(comparisons)) + 2.2))
    ys = np.arange(len(variants))[::-1]
    values = np.array([v.uar_pbv for v in variants])
    low = values - np.array([v.ci95[0] for v in variants])
    high = np.array([v.ci95[1] for v in variants]) - values
    left.errorbar(values, ys, xerr=[low, high], fmt="o", capsize=3)
    left.axvline(chance, color="grey", linestyle=":")
    left.set_yticks(ys, [v.variant for v in variants])
    left.set_xlabel(f"UAR (PBV), 95% interval over test videos (dotted: chance {chance:.3f})")
    ys = np.arange(len(comparisons))[::-1]
    diffs = np.array([c.difference for c in comparisons])
    right.errorbar(diffs, ys, xerr=[diffs - np.array([c.ci95[0] for c in comparisons]),
                                    np.array([c.ci95[1] for c in comparisons]) - diffs], fmt="s", capsize=3)
    right.axvline(0, color="grey", linestyle=":")
    right.set_yticks(ys, [f"{c.comparison}\n{c.a} - {c.b}" for c in comparisons], fontsize=7)
    right.set_xlabel("paired difference in UAR, 95% interval")
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def project(features: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, tuple[str, str]]:
    """[V, D] -> [V, 2] by PCA or t-SNE, and the two axis labels (explained variance, or the perplexity)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method == "pca":
        pca = PCA(n_components=2, random_state=seed)
        points = pca.fit_transform(features)
        share = pca.explained_variance_ratio_ * 100
        return points, (f"PC1 ({share[0]:.1f}% of variance)", f"PC2 ({share[1]:.1f}% of variance)")
    if method == "tsne":
        perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
        return points, (f"t-SNE 1 (perplexity {perplexity:g})", f"t-SNE 2 (perplexity {perplexity:g})")
    raise FerProbeError(f"method must be pca or tsne, got '{method}'")


def probe_embeddings(reader, run: Path) -> tuple[np.ndarray, list[str]]:
    """Video-level pooled vectors of a run's first saved probe, averaged over clips -> [V, D], and the ids of the
    videos that probe was trained on (all but its fold's test videos)."""
    import torch

    from fer_probe.data.inputs import InputKind
    from fer_probe.results.outputs import read_probe

    files = sorted((run / "weights").glob("*.safetensors"))
    if not files:
        raise FerProbeError(f"{run}: no weights/*.safetensors; pass a run directory of fer-probe cv or cross")
    probe, meta = read_probe(files[0])
    if int(meta["width"]) != reader.width:
        raise FerProbeError(f"{run} was trained on tokens of width {meta['width']}, the store has {reader.width}")
    out, basis = [], reader.precision.basis  # a compact store's coordinates are lifted to the tokens they stand for
    with torch.inference_mode():
        for values in reader.videos(range(len(reader))):  # [K, S, N, D or R + 1]
            x = values.float().reshape(-1, *values.shape[2:])  # [K*S, N, D or R + 1]
            if probe.input_kind == InputKind.POOLED and basis is not None:
                x = torch.from_numpy(reader.clip_means(x[None])[0])  # [K*S, D]
            elif probe.input_kind == InputKind.POOLED:
                x = x.mean(dim=1)  # [K*S, D]
            elif basis is not None:
                x = basis.lift(x)  # [K*S, N, D]
            out.append(probe.pooled(x).mean(dim=0).numpy())  # [D]
    return np.stack(out), tested_ids(run, files[0].stem)


def tested_ids(run: Path, weights_name: str) -> list[str]:
    """The test videos of the fold whose weights were used (none for a cross-dataset probe)."""
    import csv
    fold = weights_name.removeprefix("fold")
    if not fold.isdigit() or not (run / "predictions.csv").is_file():
        return []
    with open(run / "predictions.csv", newline="") as f:
        return [row["video_id"] for row in csv.DictReader(f) if row["fold"] == fold]


def embedding_plot(store: str, out: Path, *, method: str = "pca", classes: list[str] | None = None,
                   run: Path | None = None, color_by: str = "class", allow_incomplete: bool = False,
                   on_warning: Callable[[str], None] | None = None) -> Path:
    """Video-level embeddings (mean-pooled tokens, or a probe's pooled vector) in 2-D, coloured by class or
    subject; with a run, the videos that probe was trained on are drawn apart from its held-out videos. A chosen
    class without videos is said through on_warning."""
    from fer_probe.data.reader import CacheReader

    if color_by not in ("class", "subject"):
        raise FerProbeError(f"colour by class or subject, got '{color_by}'")
    with CacheReader(store, allow_incomplete=allow_incomplete) as reader:
        names = [reader.label_names[i] for i in reader.labels]
        if classes:
            unknown = sorted(set(classes) - set(reader.label_names))
            if unknown:
                raise FerProbeError(f"classes {', '.join(unknown)} are not among {', '.join(reader.label_names)}")
        for name in [c for c in classes or [] if c not in names]:
            if on_warning is not None:
                on_warning(f"class {name}: 0 videos in {store}; the plot shows the other classes only")
        keep = np.array([not classes or n in classes for n in names])
        if keep.sum() < 3:
            raise FerProbeError("fewer than 3 videos of the chosen classes; nothing to plot")
        held_out: list[str] = []
        if run:
            features, held_out = probe_embeddings(reader, run)
        else:
            features = reader.mean_pooled().mean(axis=(1, 2))  # [V, D]
        ids, subjects = reader.ids, reader.subjects
    points, (xlabel, ylabel) = project(features[keep], method)
    kept = [i for i in range(len(names)) if keep[i]]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    groups = sorted({names[i] for i in kept}, key=lambda n: (CANONICAL_LABELS + (n,)).index(n)) \
        if color_by == "class" else sorted({subjects[i] for i in kept}, key=lambda s: (len(s), s))
    held = np.array([ids[i] in set(held_out) for i in kept])
    for g, group in enumerate(groups):
        rows = np.array([(names[i] if color_by == "class" else subjects[i]) == group for i in kept])
        colour = class_colour(group, groups) if color_by == "class" else _pyplot().cm.tab20(g % 20)
        for subset, marker in ((rows & ~held, "o"), (rows & held, "^")):
            if subset.any():
                ax.scatter(points[subset, 0], points[subset, 1], s=16, alpha=0.8, color=colour, marker=marker,
                           label=group if marker == "o" or not (rows & ~held).any() else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(embedding_title(store, method, run, held_out=held_out, color_by=color_by), fontsize=8)
    ax.legend(markerscale=1.5, fontsize=7, ncol=2 if len(groups) > 12 else 1, title=color_by)
    fig.tight_layout()
    return _save(fig, out)


def embedding_title(store: str, method: str, run: Path | None, *, held_out: list[str], color_by: str) -> str:
    if run is None:
        return f"{Path(store).name}: mean-pooled encoder tokens per video, {method.upper()}, coloured by {color_by}"
    if held_out:
        return (f"{Path(store).name}: pooled by the fold-0 probe of {run.name}; circles are its training videos, "
                f"triangles its {len(held_out)} held-out test videos ({method.upper()})")
    try:
        trained_on = json.loads((run / "config.json").read_text()).get("train_store", "")
    except (OSError, ValueError):
        trained_on = ""
    if trained_on and Path(trained_on).resolve() == Path(store).resolve():
        return (f"{Path(store).name}: pooled by the probe of {run.name}, trained on all of these videos "
                f"({method.upper()})")
    return f"{Path(store).name}: pooled by the probe of {run.name}, trained on another store ({method.upper()})"
