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
