import pickle
import re

import pytest
import torch
from safetensors.torch import load_file

from fer_cache.encoders import build_encoder, describe_encoder, list_presets
from fer_cache.encoders.checkpoint import sha256_file
from fer_cache.encoders.vit import sincos_3d
from fer_cache.errors import CheckpointError, ConfigError
from tests.helpers import ENCODER_FIXTURES

TINY = dict(embed_dim=96, depth=2, num_heads=4, resolution=64, frames_per_clip=8)


@pytest.mark.parametrize("family,folder,checkpoint", [
    ("vjepa", "vjepa1-tiny", "checkpoint.pth.tar"),
    ("vjepa2", "vjepa2-tiny", "checkpoint.pt"),
])
def test_reproduces_reference_tokens(family, folder, checkpoint):
    model = build_encoder(family=family, checkpoint=ENCODER_FIXTURES / folder / checkpoint, **TINY)
    reference = load_file(str(ENCODER_FIXTURES / folder / "reference.safetensors"))
    with torch.inference_mode():
        tokens = model(reference["input"])
    assert tokens.shape == reference["tokens"].shape == (2, 64, 96)
    assert (tokens - reference["tokens"]).abs().max().item() < 1e-4


def test_reproduces_hugging_face_directory():
    folder = ENCODER_FIXTURES / "vjepa2-hf-tiny"
    model = build_encoder(family="vjepa2-hf", checkpoint=folder)  # dimensions come from config.json
    assert (model.cfg.embed_dim, model.cfg.depth, model.cfg.resolution) == (96, 2, 64)
    reference = load_file(str(folder / "reference.safetensors"))
    with torch.inference_mode():
        tokens = model(reference["input_btchw"].permute(0, 2, 1, 3, 4))  # HF [B, T, 3, H, W] -> [B, 3, T, H, W]
    assert (tokens - reference["tokens"]).abs().max().item() < 1e-4


def test_dimensions_are_read_off_the_checkpoint():
    folder = ENCODER_FIXTURES / "vjepa1-tiny"
    model = build_encoder(family="vjepa", checkpoint=folder / "checkpoint.pth.tar", num_heads=4, resolution=64,
                          frames_per_clip=8)  # width, depth, MLP, patch and tubelet from the weights
    assert (model.cfg.embed_dim, model.cfg.depth, model.cfg.patch_size, model.cfg.tubelet_size) == (96, 2, 16, 2)
    reference = load_file(str(folder / "reference.safetensors"))
    with torch.inference_mode():
        assert (model(reference["input"]) - reference["tokens"]).abs().max().item() < 1e-4
    with pytest.raises(ConfigError, match="num_heads"):
        build_encoder(family="vjepa", checkpoint=folder / "checkpoint.pth.tar")


def test_target_encoder_is_used_not_encoder():
    path = ENCODER_FIXTURES / "vjepa1-tiny" / "checkpoint.pth.tar"
    target = build_encoder(family="vjepa", checkpoint=path, **TINY)
    online = build_encoder(family="vjepa", checkpoint=path, checkpoint_key="encoder", **TINY)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(target(x), online(x))


def fixture_state(tmp_path, edit):
    blob = torch.load(ENCODER_FIXTURES / "vjepa1-tiny" / "checkpoint.pth.tar", weights_only=True)
    edit(blob["target_encoder"])
    path = tmp_path / "edited.pth.tar"
    torch.save(blob, path)
    return path


def test_strict_loading_names_the_key(tmp_path):
    missing = fixture_state(tmp_path, lambda s: s.pop("module.backbone.blocks.1.norm2.bias"))
    with pytest.raises(CheckpointError, match="missing key 'blocks.1.norm2.bias'"):
        build_encoder(family="vjepa", checkpoint=missing, **TINY)
    extra = fixture_state(tmp_path, lambda s: s.__setitem__("module.backbone.extra.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        build_encoder(family="vjepa", checkpoint=extra, **TINY)
    shaped = fixture_state(tmp_path, lambda s: s.__setitem__("module.backbone.norm.weight", torch.zeros(95)))
    with pytest.raises(CheckpointError, match="'norm.weight' has shape"):
        build_encoder(family="vjepa", checkpoint=shaped, **TINY)
    wrong_pos = fixture_state(tmp_path, lambda s: s["module.backbone.pos_embed"].mul_(-1))
    with pytest.raises(CheckpointError, match="pos_embed"):
        build_encoder(family="vjepa", checkpoint=wrong_pos, **TINY)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth.tar"
    with open(path, "wb") as f:
        pickle.dump({"target_encoder": Evil()}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        build_encoder(family="vjepa", checkpoint=path, **TINY)


def test_stored_pos_embed_equals_regenerated_table():
    blob = torch.load(ENCODER_FIXTURES / "vjepa1-tiny" / "checkpoint.pth.tar", weights_only=True)
    stored = blob["target_encoder"]["module.backbone.pos_embed"]
    assert (stored - sincos_3d(96, (4, 4, 4), uniform_power=True)).abs().max() < 1e-6


def test_vit_huge_384_builds_4608_tokens_of_width_1280():
    with torch.device("meta"):
        model = build_encoder(family="vjepa", arch="vit_huge", resolution=384, frames_per_clip=16)
        tokens = model(torch.empty(1, 3, 16, 384, 384))
    assert tuple(tokens.shape) == (1, 4608, 1280)
    assert sum(p.numel() for p in model.parameters()) > 600e6


@pytest.mark.parametrize("arch", list_presets())
def test_every_preset_builds_at_reduced_depth(arch):
    model = build_encoder(family="vjepa2", arch=arch, depth=1, resolution=32, frames_per_clip=2)
    with torch.inference_mode():
        tokens = model(torch.randn(1, 3, 2, 32, 32))
    assert tokens.shape[1:] == (4, model.cfg.embed_dim)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_random_weights_are_seeded_and_other_resolutions_work():
    a = build_encoder(family="vjepa", **TINY)
    b = build_encoder(family="vjepa", **TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    # the V-JEPA 1 table is regenerated for another grid
    with torch.inference_mode():
        tokens = a(torch.randn(1, 3, 4, 96, 32))
    assert tokens.shape == (1, 2 * 6 * 2, 96)


def test_checkpoint_sha256_is_recorded():
    path = ENCODER_FIXTURES / "vjepa2-tiny" / "checkpoint.pt"
    model = build_encoder(family="vjepa2", checkpoint=path, **TINY)
    assert model.identity.checkpoint_sha256 == sha256_file(path)
    assert describe_encoder(model)["checkpoint_sha256"] == sha256_file(path)


CHECKPOINTS = {"vjepa": "vjepa1-tiny/checkpoint.pth.tar", "vjepa2": "vjepa2-tiny/checkpoint.pt",
               "vjepa2-hf": "vjepa2-hf-tiny", "vjepa2.1": "vjepa21-tiny/checkpoint.pt", "videomae": "videomae-tiny",
               "marlin": "marlin-tiny/marlin_vit_fixture_ytf.encoder.pt", "clip": "clip-tiny",
               "siglip": "siglip-tiny", "dinov2": "dinov2-tiny", "dinov3": "dinov3-tiny"}


@pytest.mark.parametrize("actual", sorted(CHECKPOINTS))
def test_every_mis_declared_checkpoint_is_refused_naming_its_family(actual):
    """Each family's checkpoint declared as each other family: one line that names the right one, before any
    weights are mapped (a CLIP directory as siglip, a DINOv2 one as dinov3, MARLIN as videomae and back)."""
    from fer_cache.encoders import FAMILIES
    for declared in FAMILIES:
        if declared == actual:
            continue
        with pytest.raises(CheckpointError, match=f"use family {re.escape(actual)}$"):
            build_encoder(family=declared, checkpoint=ENCODER_FIXTURES / CHECKPOINTS[actual])


def test_family_mismatches_are_explained(tmp_path):
    with pytest.raises(CheckpointError, match="'pos_embed'.*use family vjepa$"):
        build_encoder(family="vjepa2", checkpoint=ENCODER_FIXTURES / "vjepa1-tiny" / "checkpoint.pth.tar", **TINY)
    with pytest.raises(CheckpointError, match="vjepa2-hf"):
        build_encoder(family="vjepa2", checkpoint=ENCODER_FIXTURES / "vjepa2-hf-tiny", **TINY)
    with pytest.raises(ConfigError, match="arch"):
        build_encoder(family="vjepa")
    with pytest.raises(CheckpointError, match="no 'pos_embed'.*use family vjepa2"):  # V-JEPA 2 weights as V-JEPA 1
        build_encoder(family="vjepa", checkpoint=ENCODER_FIXTURES / "vjepa2-tiny" / "checkpoint.pt", **TINY)
    with pytest.raises(ConfigError, match="unknown encoder setting.*resolutoin"):
        build_encoder(family="vjepa", resolutoin=64)


def test_a_grid_that_disagrees_with_the_stored_position_table_is_refused():
    path = ENCODER_FIXTURES / "vjepa1-tiny" / "checkpoint.pth.tar"
    with pytest.raises(CheckpointError, match="trained at 64 px and 8 frames.*resolution 96 and frames_per_clip 8"):
        build_encoder(family="vjepa", checkpoint=path, **(TINY | {"resolution": 96}))
    with pytest.raises(CheckpointError, match="trained at 64 px and 8 frames"):
        build_encoder(family="vjepa", checkpoint=path, **(TINY | {"frames_per_clip": 16}))


def test_hugging_face_config_wins_over_defaults_and_is_recorded(tmp_path):
    import json
    import shutil
    folder = tmp_path / "hf"
    shutil.copytree(ENCODER_FIXTURES / "vjepa2-hf-tiny", folder)
    model = build_encoder(family="vjepa2-hf", checkpoint=folder)
    described = describe_encoder(model)
    assert (described["resolution"], described["frames_per_clip"], described["num_heads"]) == (64, 8, 4)
    assert described["uniform_power"] is None  # rotary positions: uniform_power does not apply
    config = json.loads((folder / "config.json").read_text())
    config["num_attention_heads"], config["frames_per_clip"] = 8, 4
    (folder / "config.json").write_text(json.dumps(config))
    changed = describe_encoder(build_encoder(family="vjepa2-hf", checkpoint=folder))
    assert (changed["num_heads"], changed["frames_per_clip"]) == (8, 4)


def test_heads_that_no_preset_uses_are_noted():
    with torch.device("meta"):
        model = build_encoder(family="vjepa2", arch="vit_large", num_heads=8, resolution=32, frames_per_clip=2)
        assert "vit_large preset's 16" in model.identity.notes[0]
        plain = build_encoder(family="vjepa2", arch="vit_large", resolution=32, frames_per_clip=2)
        assert plain.identity.notes == ()


def test_a_json_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "vith16.pth.tar"
    path.write_text('{"model": "vit_huge"}')
    with pytest.raises(CheckpointError, match="is a JSON file, not a PyTorch checkpoint") as caught:
        build_encoder(family="vjepa", checkpoint=path, **TINY)
    assert "weights_only" not in str(caught.value)


V21 = ENCODER_FIXTURES / "vjepa21-tiny"
VIDEOMAE = ENCODER_FIXTURES / "videomae-tiny"


@pytest.mark.parametrize("output,key,width", [("last", "tokens", 128), ("hierarchical", "hierarchical", 512)])
def test_reproduces_vjepa21_reference(output, key, width):
    model = build_encoder(family="vjepa2.1", checkpoint=V21 / "checkpoint.pt", checkpoint_key="ema_encoder",
                          resolution=96, frames_per_clip=8, output=output)  # heads: width / 64, as in every 2.1 ViT
    reference = load_file(str(V21 / "reference.safetensors"))
    with torch.inference_mode():
        tokens = model(reference["input"])
    assert tokens.shape == reference[key].shape == (2, 144, width)
    assert (tokens - reference[key]).abs().max().item() < 1e-4
    described = describe_encoder(model)
    assert (described["output"], described["token_width"]) == (output, width)
    assert described["checkpoint_key"] == "ema_encoder"


def test_vjepa21_key_is_the_users_and_image_weights_are_accepted():
    online = build_encoder(family="vjepa2.1", checkpoint=V21 / "checkpoint.pt", checkpoint_key="encoder",
                           resolution=96, frames_per_clip=8)
    reference = load_file(str(V21 / "reference.safetensors"))
    with torch.inference_mode():
        assert (online(reference["input"]) - reference["tokens"]).abs().max().item() > 1e-3  # not the frozen one
    assert "online encoder; the frozen evaluation uses ema_encoder" in online.identity.notes[-1]
    with pytest.raises(CheckpointError, match="no 'target_encoder' entry; set checkpoint_key to ema_encoder "
                                              r"\(the EMA encoder; also: encoder\)$"):  # never the predictor
        build_encoder(family="vjepa2.1", checkpoint=V21 / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="'predictor' is the predictor, not an encoder; set checkpoint_key to "
                                              "ema_encoder"):
        build_encoder(family="vjepa2.1", checkpoint=V21 / "checkpoint.pt", checkpoint_key="predictor")


def test_vjepa21_presets_have_64_channel_heads():
    from fer_cache.encoders.families import FAMILIES
    presets = FAMILIES["vjepa2.1"].presets
    assert (presets["vit_giant_xformers"].num_heads, presets["vit_gigantic_xformers"].num_heads) == (22, 26)
    with torch.device("meta"):
        model = build_encoder(family="vjepa2.1", arch="vit_large", resolution=384, frames_per_clip=16,
                              output="hierarchical")
        tokens = model(torch.empty(1, 3, 16, 384, 384))
    assert tuple(tokens.shape) == (1, 4608, 4 * 1024) and model.cfg.hierarchical_layers == (5, 11, 17, 23)


def test_reproduces_videomae_reference():
    model = build_encoder(family="videomae", checkpoint=VIDEOMAE)  # size, frames, tubelet and eps from config.json
    assert (model.cfg.embed_dim, model.cfg.resolution, model.cfg.frames_per_clip, model.cfg.layernorm_eps) == \
        (96, 64, 8, 1e-12)
    reference = load_file(str(VIDEOMAE / "reference.safetensors"))
    with torch.inference_mode():
        tokens = model(reference["input_btchw"].permute(0, 2, 1, 3, 4))  # HF [B, T, 3, H, W] -> [B, 3, T, H, W]
    assert (tokens - reference["tokens"]).abs().max().item() < 1e-4


def videomae_copy(tmp_path, edit_config=None, edit_weights=None):
    import json
    import shutil

    from safetensors.torch import save_file
    folder = tmp_path / "videomae"
    shutil.copytree(VIDEOMAE, folder)
    if edit_config:
        config = json.loads((folder / "config.json").read_text())
        edit_config(config)
        (folder / "config.json").write_text(json.dumps(config))
    if edit_weights:
        weights = load_file(str(folder / "model.safetensors"))
        edit_weights(weights)
        save_file(weights, str(folder / "model.safetensors"))
    return folder


def test_videomae_legacy_config_and_fine_tuned_directories(tmp_path):
    def legacy(config):
        config["qkv_bias"] = config.pop("qv_bias")  # what the 2022 releases' config.json says
        del config["use_mean_pooling"]  # a config that does not say: the final LayerNorm is read off the weights
    model = build_encoder(family="videomae", checkpoint=videomae_copy(tmp_path / "a", legacy))
    reference = load_file(str(VIDEOMAE / "reference.safetensors"))
    with torch.inference_mode():
        tokens = model(reference["input_btchw"].permute(0, 2, 1, 3, 4))
    assert (tokens - reference["tokens"]).abs().max().item() < 1e-4
    assert "fine_tuned" not in describe_encoder(model)

    def classifier(config):
        config["architectures"] = ["VideoMAEForVideoClassification"]
    tuned = build_encoder(family="videomae", checkpoint=videomae_copy(tmp_path / "b", classifier))
    assert "fine-tuned with labels" in describe_encoder(tuned)["fine_tuned"]


def test_videomae_strictness(tmp_path):
    missing = videomae_copy(tmp_path / "a", edit_weights=lambda w: w.pop("videomae.encoder.layer.1.output.dense.bias"))
    with pytest.raises(CheckpointError, match="missing key 'videomae.encoder.layer.1.output.dense.bias'"):
        build_encoder(family="videomae", checkpoint=missing)
    extra = videomae_copy(tmp_path / "b", edit_weights=lambda w: w.__setitem__("videomae.extra", torch.zeros(2)))
    with pytest.raises(CheckpointError, match="unexpected key 'videomae.extra'"):
        build_encoder(family="videomae", checkpoint=extra)
    with pytest.raises(CheckpointError, match="needs `checkpoint`"):
        build_encoder(family="videomae")
    damaged = videomae_copy(tmp_path / "c", edit_config=lambda c: c.pop("hidden_size"))
    with pytest.raises(CheckpointError, match="config.json: no usable hidden_size"):
        build_encoder(family="videomae", checkpoint=damaged)
    (damaged / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        build_encoder(family="videomae", checkpoint=damaged)
    with pytest.raises(ConfigError, match="'output' must be one of last for family videomae"):
        build_encoder(family="videomae", checkpoint=VIDEOMAE, output="hierarchical")


@pytest.mark.parametrize("family,checkpoint,right", [
    ("vjepa2", V21 / "checkpoint.pt", "vjepa2.1"),
    ("vjepa", V21 / "checkpoint.pt", "vjepa2.1"),
    ("vjepa2.1", ENCODER_FIXTURES / "vjepa2-tiny" / "checkpoint.pt", "vjepa2"),
    ("vjepa2.1", ENCODER_FIXTURES / "vjepa1-tiny" / "checkpoint.pth.tar", "vjepa"),
    ("vjepa2-hf", VIDEOMAE, "videomae"),
    ("videomae", ENCODER_FIXTURES / "vjepa2-hf-tiny", "vjepa2-hf"),
    ("vjepa2.1", VIDEOMAE, "videomae"),
])
def test_misdeclared_checkpoints_name_the_right_family(family, checkpoint, right):
    with pytest.raises(CheckpointError, match=f"use family {right.replace('.', '[.]')}$") as caught:
        build_encoder(family=family, checkpoint=checkpoint, checkpoint_key="ema_encoder" if "21" in str(checkpoint)
                      else None, num_heads=4, resolution=64, frames_per_clip=8)
    assert "\n" not in str(caught.value)
