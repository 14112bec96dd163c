import os

import pytest
from typer.testing import CliRunner

from fer_cache.cli import app
from fer_cache.config import load_config
from fer_cache.errors import ConfigError

runner = CliRunner()


def write(tmp_path, text):
    path = tmp_path / "data.yaml"
    path.write_text(text)
    return path


def test_loads_datasets_encoders_and_extraction(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA", str(tmp_path / "videos"))
    path = write(tmp_path, """
datasets:
  a: {adapter: ravdess, root: "${FER_DATA}/ravdess", vocal_channel: [speech, song], modality: [1]}
  b: {adapter: crema_d, root: relative/crema}
  c: {adapter: manifest, manifest: list.csv, root: ~/mine}
encoders:
  big: {family: vjepa, arch: vit_huge, checkpoint: ~/models/vith.pth.tar, resolution: 384, frames_per_clip: 16}
  tiny: {family: vjepa2, checkpoint: null, embed_dim: 96, depth: 2, num_heads: 4, resolution: 64, frames_per_clip: 8}
extraction: {frames_per_clip: 16, frame_step: 4, clips_per_video: 8, spatial_views: 3, dtype: int8}
""")
    cfg = load_config(path)
    assert cfg.datasets["a"].root == tmp_path / "videos" / "ravdess"
    assert cfg.datasets["a"].vocal_channel == ("speech", "song") and cfg.datasets["a"].modality == (1,)
    assert cfg.datasets["b"].root == tmp_path.resolve() / "relative" / "crema"
    assert cfg.datasets["c"].root == os.path.expanduser("~") / type(tmp_path)("mine")
    assert cfg.datasets["c"].manifest == tmp_path.resolve() / "list.csv"
    assert cfg.encoders["big"].checkpoint == type(tmp_path)(os.path.expanduser("~/models/vith.pth.tar"))
    assert cfg.encoders["tiny"].checkpoint is None
    assert cfg.extraction.spatial_views == 3 and cfg.extraction.dtype == "int8"
    # an encoder's frames_per_clip overrides the extraction default
    assert cfg.extraction_for(cfg.encoders["tiny"]).frames_per_clip == 8
    assert cfg.encoders["tiny"].family == "vjepa2"


CASES = [
    ("datasets:\n  a: {adapter: ravdess, root: /x, rooot: /y}\n", "line 2: unknown key 'rooot'"),
    ("datasets:\n  a: {adapter: ravdess, root: /x}\nextraktion: {}\n", "line 3: unknown key 'extraktion'"),
    ("encoders:\n  e:\n    family: vjepa\n    arch: vit_huge\n    resolutoin: 384\n",
     "line 5: unknown key 'resolutoin'"),
    ("datasets: [a, b\n", "malformed YAML"),
    ("datasets:\n  a: {adapter: ravdes, root: /x}\n", "'adapter' must be one of"),
    ("datasets:\n  a: {adapter: ravdess}\n", "missing 'root'"),
    ("datasets:\n  a: {adapter: manifest, root: /x}\n", "needs 'manifest"),
    ("datasets:\n  a:\n    adapter: ravdess\n    root: ${FER_SURELY_UNSET_VAR}/x\n",
     "FER_SURELY_UNSET_VAR} is not set"),
    ("encoders:\n  e: {family: vjepa, depth: two}\n", "'depth' must be an integer"),
    ("extraction: {spatial_views: 2}\n", "'spatial_views' must be 1 or 3"),
    ("extraction: {dtype: float64}\n", "'dtype' must be one of"),
    ("extraction: {rank: 256, dtype: bfloat16}\n", "'rank' must be at least 1, with dtype int8 or float16"),
    ("extraction: {rank: 0, dtype: int8}\n", "'rank' must be at least 1"),
    ("extraction: {rank: many}\n", "'rank' must be an integer"),
    ("extraction: {rank: 8, basis_videos: 0}\n", "'basis_videos' must be at least 1"),
    ("extraction: {basis_tokens: 1.5}\n", "'basis_tokens' must be an integer"),
    ("extraction: {rnak: 8}\n", "unknown key 'rnak'"),
    ("- just\n- a list\n", "expected a mapping"),
    ("datasets:\n  a: {adapter: ravdess, root: /x, vocal_channel: [shout]}\n", "'vocal_channel' must list"),
]


def test_an_unknown_family_is_refused_where_the_encoder_is_built_naming_its_line(tmp_path):
    """config parsing does not import the encoders; the family is checked by the family table when the encoder is
    built, before any video is touched, in one line naming data.yaml's line."""
    from fer_cache.encoders import load_encoder
    path = write(tmp_path, "encoders:\n  e:\n    arch: vit_large\n    family: vjepa3\n")
    with pytest.raises(ConfigError, match=r"line 4 \(encoders.e.family\): 'family' must be one of vjepa, .*, clip"):
        load_encoder(load_config(path).encoders["e"])


@pytest.mark.parametrize("text,message", CASES)
def test_config_errors_name_the_key_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("$", r"\$").replace("{", r"\{")):
        load_config(path)
    result = runner.invoke(app, ["scan", "--dataset", "a", "--config", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert str(path) in result.output


def test_missing_config_file_unknown_dataset_and_missing_root(tmp_path):
    result = runner.invoke(app, ["scan", "--dataset", "a", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "config file not found" in result.output
    path = write(tmp_path, f"datasets:\n  a: {{adapter: ravdess, root: {tmp_path / 'missing'}}}\n")
    result = runner.invoke(app, ["scan", "--dataset", "zzz", "--config", str(path)])
    assert result.exit_code == 1 and "unknown dataset 'zzz'" in result.output and "a" in result.output
    result = runner.invoke(app, ["scan", "--dataset", "a", "--config", str(path)])
    assert result.exit_code == 1 and "is not a folder" in result.output and "line 2" in result.output


def test_unknown_encoder_and_missing_checkpoint_are_one_line(tmp_path, demo_small):
    path = write(tmp_path, f"datasets:\n  d: {{adapter: ravdess, root: {demo_small}}}\n"
                           f"encoders:\n  e: {{family: vjepa, arch: vit_large, checkpoint: {tmp_path}/no.pth.tar}}\n")
    out = str(tmp_path / "s.zarr")
    result = runner.invoke(app, ["extract", "--dataset", "d", "--encoder", "x", "--out", out, "--config", str(path)])
    assert result.exit_code == 1 and "unknown encoder 'x'" in result.output
    result = runner.invoke(app, ["extract", "--dataset", "d", "--encoder", "e", "--out", out, "--config", str(path)])
    assert result.exit_code == 1 and "checkpoint not found" in result.output
    assert not (tmp_path / "s.zarr").exists()
