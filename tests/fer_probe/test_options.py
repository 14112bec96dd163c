"""The options cv and cross share, defined once: their help shows the recipes' real values, and they resolve to
the ProbeConfig the library takes."""

import pytest
from typer.testing import CliRunner

from fer_probe.cli import app
from fer_probe.errors import FerProbeError
from fer_probe.options import PROBE_OPTIONS, config_from_options


def test_options_resolve_to_the_recipe_with_overrides():
    values = {name: None for name in PROBE_OPTIONS if name not in ("recipe", "allow_incomplete", "overwrite")}
    cfg = config_from_options("fast", **(values | {"lr": "1e-3,3e-4", "proj": True, "memory_mb": 0.0}))
    assert cfg.recipe == "fast" and cfg.lrs == (1e-3, 3e-4) and cfg.use_proj is True and cfg.memory_budget_mb == 0
    assert set(cfg.overridden) == {"lrs", "use_proj"}  # memory is no recipe field


def test_a_malformed_number_list_is_one_line():
    values = {name: None for name in PROBE_OPTIONS if name not in ("recipe", "allow_incomplete", "overwrite")}
    with pytest.raises(FerProbeError, match="--wd takes comma-separated numbers"):
        config_from_options("paper", **(values | {"wd": "0.01,x"}))


@pytest.mark.parametrize("command", ["cv", "cross"])
def test_help_shows_the_recipes_values(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())  # help wraps at the terminal's width
    assert result.exit_code == 0
    assert "[paper 4, vjepa 4, fast 8]" in text  # batch size per recipe
    assert "--precision" in text and "--num-heads" in text
