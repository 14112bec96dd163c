import json

import pytest
from typer.testing import CliRunner

from fer_probe.cli import app
from fer_probe.config import ProbeConfig
from fer_probe.errors import FerProbeError
from fer_probe.protocols.ablate import run_ablation
from fer_probe.protocols.cross import run_cross
from fer_probe.protocols.cv import run_cv
from tests.helpers import write_planted_store

runner = CliRunner()
QUICK = ProbeConfig.from_recipe("paper", epochs=3, num_heads=4, device="cpu")


def is_png(path):
    return path.read_bytes()[:4] == b"\x89PNG"


def test_report_is_rebuilt_from_the_run_directory(tmp_path, planted_store):
    run = tmp_path / "run"
    run_cv(str(planted_store), run, QUICK, n_folds=4)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    for needle in ("uar_pbv", "Per-class recall", "PBV against MV", "subject-disjoint", "95% CI", "happy",
                   "Chance level: UAR 0.250", "## Folds", "| fold | test subjects |", "## Training curves",
                   "recipe **paper**", "## This run and the paper", "| use_proj | applied |", "use_proj yes",
                   "[training_curves.png](training_curves.png)", "[confusion_pbv.png](confusion_pbv.png)"):
        assert needle in text, needle
    assert "| batch_size | 4 |" in text and "| epochs | 3 * | 20 |" in text  # differences from the paper marked
    folds = json.loads((run / "folds.json").read_text())["folds"]
    assert f"| 0 | {', '.join(folds[0]['test_subjects'])} |" in text
    for png in ("confusion_pbv.png", "confusion_mv.png", "training_curves.png"):
        assert is_png(run / png)
    first = text
    (run / "report.md").unlink()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    assert (run / "report.md").read_text() == first
    for args in (["--classes", "happy,sad", "--run", str(run)], ["--color-by", "subject", "--method", "tsne"]):
        plot = runner.invoke(app, ["embed-plot", str(planted_store), "--out", str(tmp_path / "e.png"), *args])
        assert plot.exit_code == 0, plot.output
        assert is_png(tmp_path / "e.png")
    bad = runner.invoke(app, ["embed-plot", str(planted_store), "--classes", "joy"])
    assert bad.exit_code == 1 and "joy" in bad.output
    missing = runner.invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 1 and "config.json" in missing.output


def test_cross_dataset_report_has_no_cross_validation_text(tmp_path):
    train = write_planted_store(tmp_path / "a.zarr", classes=4, seed=0)
    test = write_planted_store(tmp_path / "b.zarr", classes=4, seed=0, n_subjects=3,
                               label_names=["neutral", "happy", "sad", "surprised"])
    run_cross(str(train), str(test), tmp_path / "x", cfg=QUICK, policy="strict", calm_as_neutral=False)
    assert runner.invoke(app, ["report", str(tmp_path / "x")]).exit_code == 0
    text = (tmp_path / "x" / "report.md").read_text()
    assert "± 0.000" not in text and "per fold" not in text and "StratifiedGroupKFold" not in text
    assert "## Folds" not in text and "RAVDESS calm as neutral: no" in text and "False" not in text
    assert "| surprised | 6 |" in text  # classes in canonical order; surprised cannot be predicted but counts
    assert "| angry | 0 | - | - |" in text  # a class with no test videos is marked, not scored 0


def test_ablation_table_and_figure(tmp_path, planted_store):
    summary = run_ablation(str(planted_store), tmp_path / "ab", QUICK, n_folds=4)
    rows = summary.as_json()["comparisons"]
    assert [r["comparison"] for r in rows] == ["probe type", "cross-attention proj", "clips at test time", "voting",
                                              "training clips"]
    for r in rows:
        assert 0 <= r["uar_a"] <= 1 and 0 <= r["uar_b"] <= 1
        assert r["ci95"][0] <= r["difference"] <= r["ci95"][1] or r["difference"] == 0
        assert 0 <= r["p_value"] <= 1
    names = [v.variant for v in summary.variants]
    assert names == ["attentive", "linear", "attentive-no-proj", "attentive-test-one-clip",
                     "attentive-train-one-clip"]
    assert all(v.ci95[0] <= v.uar_pbv <= v.ci95[1] for v in summary.variants)
    folds = {(tmp_path / "ab" / v / "folds.json").read_text() for v in names}
    assert len(folds) == 1  # every variant on the same folds
    assert "distinguishable" in (tmp_path / "ab" / "ablation.md").read_text()
    assert is_png(tmp_path / "ab" / "ablation.png")
    assert json.loads((tmp_path / "ab" / "attentive-no-proj" / "config.json").read_text())["probe"]["overridden"] \
        == ["epochs", "use_proj"]


def test_compare_lays_out_runs_and_pairs_those_on_the_same_videos(tmp_path, planted_store):
    run_cv(str(planted_store), tmp_path / "paper", QUICK, n_folds=4)
    fast = ProbeConfig.from_recipe("fast", epochs=3, num_heads=4, device="cpu")
    run_cv(str(planted_store), tmp_path / "fast", fast, n_folds=4, folds_file=tmp_path / "paper" / "folds.json")
    other = write_planted_store(tmp_path / "other.zarr", n_subjects=4)
    run_cv(str(other), tmp_path / "other", fast, n_folds=2)
    result = runner.invoke(app, ["compare", str(tmp_path / "paper"), str(tmp_path / "fast"), str(tmp_path / "other"),
                                 "--out", str(tmp_path / "table.md")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "table.md").read_text()
    assert text.count("| cv |") == 3 and "| paper |" in text and "| fast |" in text
    assert "paper - fast: UAR (PBV)" in text and "other" not in text.split("Paired tests")[1]
    assert (tmp_path / "table.csv").read_text().startswith("run,command,recipe")


def test_ablation_against_another_extraction_of_the_same_videos(tmp_path, planted_store):
    cfg = ProbeConfig.from_recipe("fast", epochs=2, num_heads=4, device="cpu")
    cropped = write_planted_store(tmp_path / "cropped.zarr", signal=2.0)  # the same ids, other tokens
    summary = run_ablation(str(planted_store), tmp_path / "ab", cfg, n_folds=2, versus=str(cropped))
    row = summary.comparisons[-1]
    assert row.comparison == "store (planted.zarr vs cropped.zarr)" and row.uar_b > row.uar_a
    other = write_planted_store(tmp_path / "other.zarr", n_subjects=4)
    with pytest.raises(FerProbeError, match="do not hold the same videos"):
        run_ablation(str(planted_store), tmp_path / "ab2", cfg, n_folds=2, versus=str(other))


def test_ablation_of_three_encoders_made_by_the_fixtures(tmp_path, demo_small):
    """The central claim as one command: V-JEPA 2, V-JEPA 2.1 (hierarchical) and VideoMAE stores of the same videos,
    one probe each at its store's width and heads, paired against the first store, table and figure written."""
    from fer_cache.cli import app as cache_app
    from tests.helpers import ENCODER_FIXTURES, write_config
    entries = (f"  v2: {{family: vjepa2, checkpoint: {ENCODER_FIXTURES}/vjepa2-tiny/checkpoint.pt, num_heads: 4, "
               f"resolution: 64, frames_per_clip: 8}}\n"
               f"  v21: {{family: vjepa2.1, checkpoint: {ENCODER_FIXTURES}/vjepa21-tiny/checkpoint.pt, "
               f"checkpoint_key: ema_encoder, resolution: 64, frames_per_clip: 8, output: hierarchical}}\n"
               f"  mae: {{family: videomae, checkpoint: {ENCODER_FIXTURES}/videomae-tiny, frames_per_clip: 8}}\n")
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("encoders:\n", "encoders:\n" + entries))
    stores = []
    for name in ("v2", "v21", "mae"):
        stores.append(str(tmp_path / f"demo-{name}.zarr"))
        result = runner.invoke(cache_app, ["extract", "--dataset", "demo", "--encoder", name, "--out", stores[-1],
                                           "--config", str(config), "--workers", "0"])
        assert result.exit_code == 0, result.output
    out = tmp_path / "claim"
    result = runner.invoke(app, ["ablate", stores[0], "--versus", stores[1], "--versus", stores[2], "--stores-only",
                                 "--recipe", "fast", "--epochs", "1", "--folds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "ablation.json").read_text())
    assert [r["comparison"] for r in summary["comparisons"]] == ["store (demo-v2.zarr vs demo-v21.zarr)",
                                                                 "store (demo-v2.zarr vs demo-mae.zarr)"]
    assert [v["variant"] for v in summary["variants"]] == ["attentive", "attentive-on-demo-v21",
                                                           "attentive-on-demo-mae"]
    assert (out / "ablation.png").stat().st_size > 0
    text = (out / "ablation.md").read_text()
    assert "demo-v21.zarr: vjepa2.1 128 (hierarchical)" in text
    assert "videomae" in text and "demo-mae.zarr" in text
    folds = {json.dumps(json.loads((out / name / "folds.json").read_text())) for name in
             ("attentive", "attentive-on-demo-v21", "attentive-on-demo-mae")}
    assert len(folds) == 1  # the same folds for every store
    widths = [json.loads((out / name / "config.json").read_text())["store_attrs"]["encoder"].get("token_width", 96)
              for name in ("attentive", "attentive-on-demo-v21")]
    assert widths == [96, 512]
