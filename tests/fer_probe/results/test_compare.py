"""fer-probe compare: one table of several runs, paired tests only between runs that scored the same videos."""

from typer.testing import CliRunner

from fer_probe.cli import app
from fer_probe.config import ProbeConfig
from fer_probe.protocols.cv import run_cv
from tests.helpers import write_planted_store

runner = CliRunner()
QUICK = ProbeConfig.from_recipe("paper", epochs=3, num_heads=4, device="cpu")


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


def test_compare_never_writes_over_a_run_or_an_existing_table(tmp_path, planted_store):
    """--out inside a run directory, over an existing file or at a folder is refused in one line, before any work,
    and the run's files stay as they were; the paths written are printed; report names a damaged column."""
    run = tmp_path / "run"
    run_cv(str(planted_store), run, QUICK, n_folds=4)
    predictions = (run / "predictions.csv").read_text()

    def compare(*extra):
        return runner.invoke(app, ["compare", str(run), *map(str, extra)])
    for out, needle in ((run / "predictions.csv", "a file of the run"), (run / "report.md", "a file of the run"),
                        (run / "weights" / "t.md", "a file of the run"), (tmp_path, "is a folder")):
        result = compare("--out", out)
        assert result.exit_code == 1 and needle in result.output and "Traceback" not in result.output, out
    assert (run / "predictions.csv").read_text() == predictions and not (run / "report.md").exists()
    assert compare("--out", run / "table.md").exit_code == 0  # a new file beside a run's own ones is fine
    written = compare("--out", tmp_path / "table.md")
    assert written.exit_code == 0 and f"wrote {tmp_path / 'table.md'}" in written.output
    assert "exists; pass --overwrite" in compare("--out", tmp_path / "table.md").output
    assert compare("--out", tmp_path / "table.md", "--overwrite").exit_code == 0
    (run / "predictions.csv").write_text(predictions.replace("label,", "labels,", 1))
    damaged = runner.invoke(app, ["report", str(run)])
    assert damaged.exit_code == 1 and "lacks the column label" in damaged.output
    missing = runner.invoke(app, ["report", str(tmp_path / "nonexistent")])
    assert missing.exit_code == 1 and "no such directory" in missing.output
