"""Encoder entries that cannot work (issue 33, cases 1, 6, 10, 11): each is refused in one line that names the
data.yaml file, line and entry (or, from Python, the argument), before any progress bar is drawn."""

import pytest

from fer_cache.encoders import build_encoder
from fer_cache.errors import ConfigError
from tests.helpers import BIN, ENCODER_FIXTURES, assert_one_line_error, run, write_config

V21 = ENCODER_FIXTURES / "vjepa21-tiny" / "checkpoint.pt"
ENTRIES = {
    # a VideoMAE table rebuilt for a grid the model never saw (config.json: 64 px, 8 frames)
    "mae96": (f"{{family: videomae, checkpoint: {ENCODER_FIXTURES}/videomae-tiny, frames_per_clip: 8, resolution: "
              "96}", "resolution 96 differs from", "config.json's 64"),
    "mae16": (f"{{family: videomae, checkpoint: {ENCODER_FIXTURES}/videomae-tiny, frames_per_clip: 16}}",
              "frames_per_clip 16 differs from", "config.json's 8"),
    "large": (f"{{family: vjepa2.1, checkpoint: {V21}, checkpoint_key: ema_encoder, arch: vit_large, resolution: 96, "
              "frames_per_clip: 8}", "(encoders.large.arch)", "the checkpoint has 12 blocks of width 128"),
    "shallow": ("{family: vjepa2.1, embed_dim: 128, depth: 3, resolution: 64, frames_per_clip: 8}",
                "(encoders.shallow.depth)", "4 hierarchical layers"),
    "headless": ("{family: vjepa, embed_dim: 96, depth: 2, resolution: 64, frames_per_clip: 8}",
                 "(encoders.headless.num_heads)", "or an explicit `num_heads`"),
    "predictor": (f"{{family: vjepa2.1, checkpoint: {V21}, checkpoint_key: predictor, resolution: 96, "
                  "frames_per_clip: 8}", "'predictor' is the predictor, not an encoder", "ema_encoder"),
}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_an_entry_that_cannot_work_is_one_line_naming_it_and_no_bar_is_drawn(tmp_path, demo_small, name):
    entry, *needles = ENTRIES[name]
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("encoders:\n", f"encoders:\n  {name}: {entry}\n"))
    result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", name, "--config", config, "--out",
                 tmp_path / "s.zarr", "--workers", "0")
    assert_one_line_error(result, *needles)
    if name != "predictor":  # the checkpoint's own errors name the file; the entry's name data.yaml's line
        assert f"{config} line 5 (encoders.{name}" in result.stderr
    assert "videos" not in result.stdout and not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("settings,needle", [
    (dict(family="vjepa", resolution="64"), "encoder setting resolution: expected int, got '64'"),
    (dict(family="vjepa", embed_dim=-96, depth=2, num_heads=4), "embed_dim must be a positive integer, got -96"),
    (dict(family="vjepa", embed_dim=96, depth=0, num_heads=4), "depth must be a positive integer, got 0"),
    (dict(embed_dim=96, depth=2, num_heads=4), "build_encoder needs family=, one of: vjepa, vjepa2"),
    (dict(family="vjepa", embed_dim=96, depth=2, num_heads=4, uniform_power="no"), "uniform_power: expected bool"),
    (dict(family="vjepa", arch="vit_tiny", mlp_ratio="4"), "mlp_ratio: expected float"),
])
def test_python_api_misuse_names_the_argument(settings, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        build_encoder(**settings)


def test_a_fine_tuned_videomae_is_flagged_wherever_stores_are_compared(tmp_path, demo_small):
    """Before: flagged in `info` and the cv report only, not in extract's summary, ablate's table, ablation.json or
    compare's table, where the comparison is made (issue 33, case 14)."""
    import json
    import shutil

    from typer.testing import CliRunner

    from fer_cache.cli import app as cache_app
    from fer_probe.cli import app as probe_app
    tuned = tmp_path / "videomae-tuned"
    shutil.copytree(ENCODER_FIXTURES / "videomae-tiny", tuned)
    config = json.loads((tuned / "config.json").read_text())
    (tuned / "config.json").write_text(json.dumps(config | {"architectures": ["VideoMAEForVideoClassification"]}))
    data = write_config(tmp_path, demo_small)
    data.write_text(data.read_text().replace("encoders:\n", (
        f"encoders:\n  mae: {{family: videomae, checkpoint: {ENCODER_FIXTURES}/videomae-tiny, frames_per_clip: 8}}\n"
        f"  tuned: {{family: videomae, checkpoint: {tuned}, frames_per_clip: 8}}\n")))
    runner = CliRunner()
    for name in ("mae", "tuned"):
        result = runner.invoke(cache_app, ["extract", "--dataset", "demo", "--encoder", name, "--config", str(data),
                                           "--out", str(tmp_path / f"{name}.zarr"), "--workers", "0"])
        assert result.exit_code == 0, result.output
        assert ("fine-tuned with labels" in result.output) == (name == "tuned")
    out = tmp_path / "ab"
    result = runner.invoke(probe_app, ["ablate", str(tmp_path / "mae.zarr"), "--versus", str(tmp_path / "tuned.zarr"),
                                       "--stores-only", "--recipe", "fast", "--epochs", "1", "--folds", "2", "--out",
                                       str(out)])
    assert result.exit_code == 0 and "tuned.zarr: videomae 96, fine-tuned with labels" in result.output
    summary = json.loads((out / "ablation.json").read_text())
    assert [bool(s["fine_tuned"]) for s in summary["stores"]] == [False, True]
    assert "fine-tuned with labels" in summary["variants"][1]["changes"]["store"]
    assert "**Note: fine-tuned with labels" in (out / "ablation.md").read_text()
    table = runner.invoke(probe_app, ["compare", str(out / "attentive"), str(out / "attentive-on-tuned"), "--out",
                                      str(tmp_path / "table.md")])
    assert table.exit_code == 0 and "videomae 96 (fine-tuned with labels)" in (tmp_path / "table.md").read_text()


def test_what_the_build_decided_is_said_by_extract_and_kept_in_the_store(tmp_path, demo_small):
    """Heads the weights cannot say (MARLIN without num_heads) and an online encoder chosen by checkpoint_key reach
    extract's summary and the store's created_by, not only the Python object."""
    import zarr
    data = write_config(tmp_path, demo_small)
    data.write_text(data.read_text().replace("encoders:\n", (
        f"encoders:\n  marlin: {{family: marlin, checkpoint: {ENCODER_FIXTURES}/marlin-tiny/"
        "marlin_vit_fixture_ytf.encoder.pt, frames_per_clip: 8}\n"
        f"  online: {{family: vjepa2.1, checkpoint: {V21}, checkpoint_key: encoder, resolution: 96, "
        "frames_per_clip: 8}\n")))
    for name, needle in (("marlin", "num_heads 2 from MARLIN's 64-channel heads"),
                         ("online", "chose the online encoder; the frozen evaluation uses ema_encoder")):
        store = tmp_path / f"{name}.zarr"
        result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", name, "--config", data, "--out",
                     store, "--workers", "0", "--limit", "2")
        assert result.returncode == 0 and needle in " ".join(result.stdout.split()), result.stdout + result.stderr
        notes = zarr.open_group(str(store), mode="r").attrs["created_by"]["encoder_notes"]
        assert any(needle in note for note in notes)
