import json

from typer.testing import CliRunner

from fer_probe.ablate import run_ablation
from fer_probe.cli import app
from fer_probe.cv import run_cv
from fer_probe.train import ProbeConfig

runner = CliRunner()


def test_report_is_rebuilt_from_the_run_directory(tmp_path, planted_store):
    run = tmp_path / "run"
    run_cv(str(planted_store), run, ProbeConfig(epochs=3, num_heads=4, device="cpu"), n_folds=4)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    for needle in ("uar_pbv", "Per-class recall", "PBV against MV", "subject-disjoint", "95% CI", "happy"):
        assert needle in text
    for png in ("confusion_pbv.png", "confusion_mv.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    first = text
    (run / "report.md").unlink()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    assert (run / "report.md").read_text() == first
    plot = runner.invoke(app, ["embed-plot", str(planted_store), "--out", str(tmp_path / "e.png"), "--classes",
                               "happy,sad", "--run", str(run)])
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["embed-plot", str(planted_store), "--classes", "joy"])
    assert bad.exit_code == 1 and "joy" in bad.output
    missing = runner.invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 1 and "config.json" in missing.output


def test_ablation_table(tmp_path, planted_store):
    rows = run_ablation(str(planted_store), tmp_path / "ab", n_folds=4, epochs=3, device="cpu")
    assert [r["comparison"] for r in rows] == ["probe type", "clips at test time", "voting", "training clips"]
    for r in rows:
        assert 0 <= r["uar_a"] <= 1 and 0 <= r["uar_b"] <= 1
        assert r["ci95"][0] <= r["difference"] <= r["ci95"][1] or r["difference"] == 0
        assert 0 <= r["p_value"] <= 1
    folds = {json.loads((tmp_path / "ab" / v / "folds.json").read_text())["folds"].__repr__()
             for v in ("attentive", "linear", "attentive-test-one-clip", "attentive-train-all-clips")}
    assert len(folds) == 1  # every variant on the same folds
    assert "distinguishable" in (tmp_path / "ab" / "ablation.md").read_text()
