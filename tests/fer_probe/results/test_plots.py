"""Figures: written as PNGs, the same colour for a class in every figure, and embedding maps that pool with a run's
own probe or say in one line why they cannot."""

import numpy as np
import pytest

from fer_probe.config import ProbeConfig
from fer_probe.errors import FerProbeError
from fer_probe.protocols.cv import run_cv
from fer_probe.results.plots import class_colour, confusion_png, curves_png, embedding_plot, project

FAST = ProbeConfig.from_recipe("fast", epochs=2, num_heads=4, device="cpu")


def is_png(path):
    return path.read_bytes()[:4] == b"\x89PNG"


def test_a_class_has_one_colour_with_or_without_the_others():
    assert class_colour("happy", ["happy", "sad"]) == class_colour("happy", ["neutral", "calm", "happy"])
    assert class_colour("happy", ["happy", "sad"]) != class_colour("sad", ["happy", "sad"])


def test_confusion_and_curves_are_pngs(tmp_path):
    matrix = np.array([[3, 1], [0, 0]])  # the second class has no test videos
    assert is_png(confusion_png(matrix, ["happy", "sad"], tmp_path / "c.png", title="t"))
    log = [{"epoch": e, "fold": 0, "head": "lr1e-03_wd0.01", "train_loss": 1.0 / e, "train_accuracy": 0.5,
            "val_uar_pbv": None} for e in (1, 2, 3)]
    assert is_png(curves_png(log, tmp_path / "curves.png", "t"))


def test_training_curves_show_chance_and_keep_the_legend_off_the_panels(tmp_path, monkeypatch):
    """Before: no chance line on the accuracy panel, and with --val-curve and 10 candidates the legend covered the loss
    panel (issue 33, case 17)."""
    import fer_probe.results.plots as plots
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    log = [{"epoch": e, "fold": f, "head": f"lr{h}", "train_loss": 1.0 / e, "train_accuracy": 0.5, "val_uar_pbv": 0.4}
           for e in (1, 2, 3) for f in range(5) for h in range(10)]
    curves_png(log, tmp_path / "curves.png", "t", chance=0.25)
    fig = figures[0]
    loss, accuracy, validation = fig.axes
    assert [line.get_label() for line in accuracy.lines if line.get_linestyle() == ":"] == ["chance 0.250"]
    assert any(line.get_label() == "chance 0.250" for line in validation.lines)
    assert not any(line.get_label().startswith("chance") for line in loss.lines)  # a loss has no chance level
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # below the panels
    legend_top = fig.legends[0].get_window_extent(fig.canvas.get_renderer()).y1
    assert legend_top <= min(ax.get_tightbbox(fig.canvas.get_renderer()).y0 for ax in fig.axes) + 1


def test_pca_keeps_one_point_per_video_and_names_its_axes():
    points, (x, y) = project(np.random.default_rng(0).standard_normal((10, 6)), "pca")
    assert points.shape == (10, 2) and x.startswith("PC1")
    with pytest.raises(FerProbeError, match="pca or tsne"):
        project(np.zeros((4, 2)), "umap")


def test_embedding_maps_of_the_store_and_of_a_runs_probe(tmp_path, planted_store):
    assert is_png(embedding_plot(str(planted_store), tmp_path / "tokens.png", classes=["happy", "sad"]))
    run_cv(str(planted_store), tmp_path / "run", FAST, n_folds=2)
    assert is_png(embedding_plot(str(planted_store), tmp_path / "probe.png", run=tmp_path / "run",
                                 color_by="subject"))
    with pytest.raises(FerProbeError, match="not among"):
        embedding_plot(str(planted_store), tmp_path / "x.png", classes=["joy"])


def test_a_chosen_class_without_videos_is_said(tmp_path):
    """A store whose vocabulary names a class that none of its videos has: the plot is drawn, the user told."""
    from tests.helpers import BIN, run, write_planted_store
    store = write_planted_store(tmp_path / "s.zarr", classes=3, label_names=["neutral", "calm", "happy", "sad"])
    result = run(BIN / "fer-probe", "embed-plot", store, "--classes", "neutral,sad,calm", "--out", tmp_path / "e.png")
    assert result.returncode == 0 and is_png(tmp_path / "e.png")
    assert "class sad: 0 videos" in result.stderr
