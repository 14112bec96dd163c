import json

from typer.testing import CliRunner

from fer_probe.cli import app
from fer_probe.config import ProbeConfig
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
    assert "identical to PBV by construction" in text and "PBV against MV" not in text and "| uar_mv |" not in text
    for needle in ("uar_pbv", "Per-class recall", "subject-disjoint", "95% CI", "happy",
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
    assert "the UAR of a constant prediction, or of guessing, is 1 / the number of test classes, whatever the " \
        "classes the probe was trained on" in text


def test_runs_that_vote_over_several_posteriors_keep_every_metric_and_the_pbv_mv_test(tmp_path, planted_store):
    run = tmp_path / "fast"
    run_cv(str(planted_store), run, ProbeConfig.from_recipe("fast", epochs=2, num_heads=4, device="cpu"), n_folds=4)
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    text = (run / "report.md").read_text()
    assert "PBV against MV" in text and "| uar_mv |" in text and "by construction" not in text


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_truncated_figure(tmp_path, planted_store):
    """Before: a 234-line matplotlib traceback and a 0-byte confusion_mv.png (issue 33, case 5). A file-size limit
    stands in for the full disk: every write past it fails as a full disk's would."""
    import subprocess

    from tests.helpers import BIN, assert_one_line_error
    run = tmp_path / "run"
    run_cv(str(planted_store), run, QUICK, n_folds=4)
    for png in run.glob("*.png"):
        png.unlink()
    line = f"ulimit -f 8; exec '{BIN / 'fer-probe'}' report '{run}'"  # 8 KiB: report.md fits, the figures do not
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=600)
    assert_one_line_error(result, "cannot write", ".png", "free space")
    assert not list(run.glob("*.partial")) and all(is_png(p) for p in run.glob("*.png"))


def test_confusion_figures_say_their_uar_is_pooled(tmp_path, planted_store, monkeypatch):
    """Before: the figure said `UAR(PBV) 0.583` (pooled) and the report 0.589 ± 0.080 (mean of folds), unexplained."""
    import fer_probe.results.report as report
    titles = []
    monkeypatch.setattr(report, "confusion_png", lambda matrix, names, path, *, title: titles.append(title) or path)
    run = tmp_path / "run"
    run_cv(str(planted_store), run, QUICK, n_folds=4)
    report.write_report(run)
    assert len(titles) == 2 and all("pooled over all test videos (the report's is the mean of the folds' UARs)" in t
                                    for t in titles)
