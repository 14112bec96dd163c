"""Frame-wise image encoders (CLIP, SigLIP, DINOv2, DINOv3) against the outputs transformers 5.25 computed on the
tiny fixture directories, per frame; plus the variants of other releases (vision-only CLIP, SwiGLU, gated MLPs)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fer_cache.encoders import build_encoder, describe_encoder
from fer_cache.errors import CheckpointError, ConfigError
from tests.helpers import ENCODER_FIXTURES

FRAMES = 4  # the references hold B*T = 8 frames: 2 clips of 4


def clips_of(reference: dict) -> torch.Tensor:
    frames = reference["pixel_values"]  # [B*T, 3, H, W], clip b's frame t at row b*T + t
    return frames.reshape(-1, FRAMES, *frames.shape[1:]).transpose(1, 2)  # [B, 3, T, H, W]


@pytest.mark.parametrize("family,prefix", [("clip", 1), ("siglip", 0), ("dinov2", 1), ("dinov3", 5)])
def test_reproduces_the_reference_per_frame_tokens_and_pooled_vectors(family, prefix):
    folder = ENCODER_FIXTURES / f"{family}-tiny"
    reference = load_file(str(folder / "reference.safetensors"))
    video = clips_of(reference)
    B, D = video.shape[0], reference["last_hidden_state"].shape[-1]
    model = build_encoder(family=family, checkpoint=folder, frames_per_clip=FRAMES)
    with torch.inference_mode():
        tokens = model(video)
    patches = reference["last_hidden_state"][:, prefix:]  # [B*T, P, D]: CLS and registers dropped
    assert model.prefix_tokens == prefix and tuple(tokens.shape) == (B, FRAMES * patches.shape[1], D)
    assert (tokens - patches.reshape(B, -1, D)).abs().max().item() < 1e-4  # (frame, row, column) order
    assert model.cfg.token_grid == (FRAMES, 4, 4) and model.cfg.resolution == video.shape[-1]
    pooled = build_encoder(family=family, checkpoint=folder, frames_per_clip=FRAMES, output="cls")
    with torch.inference_mode():
        vectors = pooled(video)
    assert tuple(vectors.shape) == (B, FRAMES, D) and pooled.cfg.token_grid == (FRAMES, 1, 1)
    assert (vectors - reference["pooler_output"].reshape(B, FRAMES, D)).abs().max().item() < 1e-4
    mean = json.loads((folder / "preprocessor_config.json").read_text())["image_mean"]
    assert model.normalisation.mean == tuple(mean) and describe_encoder(pooled)["output"] == "cls"


def test_a_vision_only_clip_directory_gives_the_same_tokens(tmp_path):
    from transformers import CLIPVisionModel
    folder = ENCODER_FIXTURES / "clip-tiny"
    CLIPVisionModel.from_pretrained(folder, local_files_only=True).save_pretrained(tmp_path / "vision")
    shutil.copy(folder / "preprocessor_config.json", tmp_path / "vision")
    reference = load_file(str(folder / "reference.safetensors"))
    model = build_encoder(family="clip", checkpoint=tmp_path / "vision", frames_per_clip=FRAMES)
    with torch.inference_mode():
        tokens = model(clips_of(reference))
    expected = reference["last_hidden_state"][:, 1:].reshape(tokens.shape)
    assert (tokens - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("family,model_class,switch,key", [
    ("dinov2", "Dinov2Model", {"use_swiglu_ffn": True}, "mlp.weights_in"),  # released ViT-g/14
    ("dinov3", "DINOv3ViTModel", {"use_gated_mlp": True}, "mlp.gate_proj"),  # larger DINOv3 releases
])
def test_gated_feed_forwards_load_and_match_transformers(tmp_path, family, model_class, switch, key):
    import transformers
    config = json.loads((ENCODER_FIXTURES / f"{family}-tiny" / "config.json").read_text()) | switch
    config.pop("transformers_version", None)
    model_type = getattr(transformers, model_class).config_class(**config)
    torch.manual_seed(0)
    original = getattr(transformers, model_class)(model_type).eval()
    original.save_pretrained(tmp_path / family)
    assert any(key in name for name in load_file(str(tmp_path / family / "model.safetensors")))
    ours = build_encoder(family=family, checkpoint=tmp_path / family, frames_per_clip=2, resolution=56 if
                         family == "dinov2" else 64)
    video = torch.randn(1, 3, 2, ours.cfg.resolution, ours.cfg.resolution)
    with torch.inference_mode():
        expected = original(pixel_values=video.transpose(1, 2).flatten(0, 1)).last_hidden_state
        tokens = ours(video)
    assert (tokens - expected[:, ours.prefix_tokens:].reshape(tokens.shape)).abs().max().item() < 1e-5


def test_resolution_overrides_the_directory_and_interpolates_clip_positions():
    folder = ENCODER_FIXTURES / "clip-tiny"
    model = build_encoder(family="clip", checkpoint=folder, frames_per_clip=2, resolution=96)
    with torch.inference_mode():
        tokens = model(torch.randn(1, 3, 2, 96, 96))
    assert tuple(tokens.shape) == (1, 2 * 36, 128) and model.extra == {"interpolate_pos_encoding": True}
    assert build_encoder(family="clip", checkpoint=folder, frames_per_clip=2).extra == {}  # the trained size


def test_settings_that_disagree_with_config_json_are_refused(tmp_path):
    folder = ENCODER_FIXTURES / "siglip-tiny"
    with pytest.raises(ConfigError, match="depth 12 differs from .*config.json's 2"):
        build_encoder(family="siglip", checkpoint=folder, depth=12)
    with pytest.raises(ConfigError, match="reads its dimensions from"):
        build_encoder(family="siglip", checkpoint=folder, arch="vit_base")
    with pytest.raises(ConfigError, match="resolution 60 is not a multiple of patch_size 16; use e.g. 48"):
        build_encoder(family="siglip", checkpoint=folder, resolution=60)
    with pytest.raises(ConfigError, match="'output' must be one of last, cls"):
        build_encoder(family="siglip", checkpoint=folder, output="hierarchical")
    headless = tmp_path / "headless"
    shutil.copytree(folder, headless)
    config = json.loads((headless / "config.json").read_text())
    config["vision_config"]["vision_use_head"] = False
    (headless / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unexpected key 'head.attention"):
        build_encoder(family="siglip", checkpoint=headless)  # its head weights are no longer part of the model
    with pytest.raises(CheckpointError, match="needs `checkpoint`"):
        build_encoder(family="dinov2")


def test_a_missing_transformers_install_names_the_extra(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "transformers":
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(CheckpointError, match=r"pip install 'fer-jepa\[hf\]'"):
        build_encoder(family="dinov3", checkpoint=ENCODER_FIXTURES / "dinov3-tiny")
