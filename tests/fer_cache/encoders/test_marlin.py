"""MARLIN against the official marlin-pytorch 0.3.4 outputs of the tiny release-format fixture."""

import pytest
import torch
from safetensors.torch import load_file

from fer_cache.encoders import build_encoder, describe_encoder
from fer_cache.encoders.weights import UNIT
from fer_cache.errors import CheckpointError, ConfigError
from tests.helpers import ENCODER_FIXTURES

FOLDER = ENCODER_FIXTURES / "marlin-tiny"
RELEASE = FOLDER / "marlin_vit_fixture_ytf.encoder.pt"
TINY = dict(num_heads=4, resolution=64, frames_per_clip=8)


def test_reproduces_the_official_tokens_from_frames_in_unit_range():
    model = build_encoder(family="marlin", checkpoint=RELEASE, **TINY)
    reference = load_file(str(FOLDER / "reference.safetensors"))
    with torch.inference_mode():
        tokens = model(reference["input"])  # [B, 3, T, H, W] in [0, 1]
    assert tokens.shape == reference["tokens"].shape == (2, 64, 128)
    assert (tokens - reference["tokens"]).abs().max().item() < 1e-4
    assert model.normalisation == UNIT  # MARLIN divides by 255 and applies no mean/std
    assert model.cfg.layernorm_eps == 1e-5 and describe_encoder(model)["family"] == "marlin"


def test_a_full_release_loads_its_encoder_and_accounts_for_the_decoder(tmp_path):
    state = torch.load(RELEASE, weights_only=True)
    full = dict(state) | {"decoder.blocks.0.norm1.weight": torch.ones(64), "enc_dec_proj.weight": torch.ones(64, 128)}
    torch.save(full, tmp_path / "marlin_vit_fixture_ytf.full.pt")
    reference = load_file(str(FOLDER / "reference.safetensors"))
    model = build_encoder(family="marlin", checkpoint=tmp_path / "marlin_vit_fixture_ytf.full.pt", **TINY)
    with torch.inference_mode():
        assert (model(reference["input"]) - reference["tokens"]).abs().max().item() < 1e-4
    torch.save(dict(state) | {"classifier.weight": torch.ones(2, 128)}, tmp_path / "stray.pt")
    with pytest.raises(CheckpointError, match="unexpected key 'classifier.weight'"):
        build_encoder(family="marlin", checkpoint=tmp_path / "stray.pt", **TINY)
    del state["encoder.blocks.1.norm2.bias"]
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="missing key 'blocks.1.norm2.bias'"):
        build_encoder(family="marlin", checkpoint=tmp_path / "short.pt", **TINY)


def test_a_grid_its_stored_table_was_not_trained_for_is_refused():
    with pytest.raises(CheckpointError, match="position table has 64 tokens.*resolution 96 and frames_per_clip 8 give "
                                              "144"):
        build_encoder(family="marlin", checkpoint=RELEASE, **(TINY | {"resolution": 96}))
    with pytest.raises(CheckpointError, match="frames_per_clip 16 give 128"):
        build_encoder(family="marlin", checkpoint=RELEASE, **(TINY | {"frames_per_clip": 16}))


def test_heads_come_from_the_release_presets_or_64_channel_heads_with_a_note():
    model = build_encoder(family="marlin", checkpoint=RELEASE, resolution=64, frames_per_clip=8)
    assert model.cfg.num_heads == 2 and "64-channel heads" in model.identity.notes[0]
    with pytest.raises(ConfigError, match="unknown arch 'vit_huge' for family marlin"):
        build_encoder(family="marlin", checkpoint=RELEASE, arch="vit_huge", **TINY)


def test_the_stored_table_gives_the_size_the_frames_leave_open():
    """Extraction always sets frames_per_clip; the stored table then says the resolution (and the reverse)."""
    reference = load_file(str(FOLDER / "reference.safetensors"))
    for given in (dict(frames_per_clip=8), dict(resolution=64)):
        model = build_encoder(family="marlin", checkpoint=RELEASE, num_heads=4, **given)
        assert (model.cfg.resolution, model.cfg.frames_per_clip) == (64, 8)
        with torch.inference_mode():
            assert (model(reference["input"]) - reference["tokens"]).abs().max().item() < 1e-4
