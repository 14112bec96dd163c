"""PNG figures: confusion matrices and video-level embedding maps (matplotlib, no screen needed)."""

import json
from pathlib import Path

import numpy as np

from fer_probe.errors import FerProbeError


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise FerProbeError("plots need matplotlib: pip install 'fer-jepa[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def confusion_png(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> Path:
    """Rows normalised by true class (recall on the diagonal), counts in brackets, class names on both axes."""
    plt = _pyplot()
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = 1.2 + 0.75 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{normalised[i, j]:.2f}\n({matrix[i, j]})", ha="center", va="center", fontsize=7,
                    color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def project(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """[V, D] -> [V, 2] by PCA or t-SNE."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "tsne":
        perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    raise FerProbeError(f"--method must be pca or tsne, got '{method}'")


def probe_embeddings(reader, run: Path) -> np.ndarray:
    """Video-level pooled vectors of a trained probe (its first saved fold), averaged over clips -> [V, D]."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from fer_probe.probes import build_probe

    files = sorted((run / "weights").glob("*.safetensors"))
    if not files:
        raise FerProbeError(f"{run}: no weights/*.safetensors; pass a run directory of fer-probe cv or cross")
    with safe_open(str(files[0]), "pt") as f:
        meta = f.metadata()
    if int(meta["width"]) != reader.width:
        raise FerProbeError(f"{run} was trained on tokens of width {meta['width']}, the store has {reader.width}")
    probe = build_probe(meta["probe"], reader.width, len(json.loads(meta["classes"])), int(meta["num_heads"]),
                        int(meta["num_queries"]), meta["head"])
    probe.load_state_dict(load_file(str(files[0])))
    probe.eval()
    out = []
    with torch.inference_mode():
        for values in reader.videos(list(range(len(reader)))):  # [K, S, N, D]
            x = values.reshape(-1, *values.shape[2:])  # [K*S, N, D]
            if probe.input_kind == "pooled":
                x = x.mean(dim=1)  # [K*S, D]
            out.append(probe.pooled(x).mean(dim=0).numpy())  # [D]
    return np.stack(out)


def embedding_plot(store: str, out: Path, method: str = "pca", classes: list[str] | None = None,
                   run: Path | None = None, allow_incomplete: bool = False) -> Path:
    """Video-level embeddings (mean-pooled tokens, or a probe's pooled vector) in 2-D, coloured by class."""
    from fer_probe.reader import CacheReader

    reader = CacheReader(store, allow_incomplete)
    names = [reader.label_names[i] for i in reader.labels]
    if classes:
        unknown = sorted(set(classes) - set(reader.label_names))
        if unknown:
            raise FerProbeError(f"--classes: {', '.join(unknown)} not among {', '.join(reader.label_names)}")
    keep = np.array([not classes or n in classes for n in names])
    if keep.sum() < 3:
        raise FerProbeError("fewer than 3 videos of the chosen classes; nothing to plot")
    features = probe_embeddings(reader, run) if run else reader.mean_pooled().mean(axis=(1, 2))  # [V, D]
    points = project(features[keep], method)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    kept_names = [n for n, k in zip(names, keep) if k]
    for name in [n for n in reader.label_names if n in set(kept_names)]:
        rows = np.array([n == name for n in kept_names])
        ax.scatter(points[rows, 0], points[rows, 1], s=14, alpha=0.8, label=name)
    source = f"pooled by the first probe of {run.name} (its training videos included)" if run else "mean-pooled tokens"
    ax.set_title(f"{Path(store).name}: {source}, {method.upper()}", fontsize=9)
    ax.legend(markerscale=1.5, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
