"""Hugging Face directories (config.json + model.safetensors) of V-JEPA 2 and VideoMAE, mapped to our key names."""

import json
from pathlib import Path

import torch

from fer_cache.encoders.weights import Weights
from fer_cache.errors import CheckpointError

VIDEOMAE_MODELS = {"VideoMAEForPreTraining": None, "VideoMAEModel": None,
                   "VideoMAEForVideoClassification": "fine-tuned with labels (VideoMAEForVideoClassification): its "
                                                     "tokens are not self-supervised features"}


def read_directory(path: Path, family_title: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json and all weights of a Hugging Face model directory."""
    from safetensors.torch import load_file

    config_file, weights_file = path / "config.json", path / "model.safetensors"
    if not weights_file.is_file() and (path / "pytorch_model.bin").is_file():
        weights_file = path / "pytorch_model.bin"  # the 2022 releases; read as tensors only
    for f in (config_file, weights_file):
        if not f.is_file():
            raise CheckpointError(f"{f} not found: a Hugging Face {family_title} directory holds config.json and "
                                  "model.safetensors")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file}: not valid JSON ({exc})") from exc
    try:
        if weights_file.suffix == ".bin":
            weights = torch.load(weights_file, map_location="cpu", weights_only=True)
        else:
            weights = load_file(str(weights_file))
    except Exception as exc:  # any failure to parse means the same to the user: an unreadable weights file
        kind = "PyTorch" if weights_file.suffix == ".bin" else "safetensors"
        raise CheckpointError(f"{weights_file}: not a readable {kind} file ({str(exc)[:200]})") from exc
    return config, weights


def read_hf_vjepa2(path: Path, checkpoint_key: str | None = None) -> Weights:
    """A Hugging Face V-JEPA 2 directory: encoder weights under `encoder.`, dimensions from config.json."""
    config, weights = read_directory(path, "V-JEPA 2")
    state: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if not key.startswith("encoder."):
            continue  # predictor and pooler weights are unused by a frozen encoder
        key = key[len("encoder."):]
        key = key.replace("embeddings.patch_embeddings.", "patch_embed.").replace("layer.", "blocks.", 1)
        key = key.replace("layernorm.", "norm.")
        state[key] = value
    for i in range(int(config.get("num_hidden_layers", 0))):
        parts = [state.pop(f"blocks.{i}.attention.{name}.{kind}", None) for kind in ("weight", "bias")
                 for name in ("query", "key", "value")]
        if any(p is None for p in parts):
            raise CheckpointError(f"{path / 'model.safetensors'}: missing attention query/key/value weights of "
                                  f"layer {i}")
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat(parts[:3], dim=0)
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat(parts[3:], dim=0)
        for kind in ("weight", "bias"):
            if f"blocks.{i}.attention.proj.{kind}" in state:
                state[f"blocks.{i}.attn.proj.{kind}"] = state.pop(f"blocks.{i}.attention.proj.{kind}")
    dims = {"embed_dim": config.get("hidden_size"), "depth": config.get("num_hidden_layers"),
            "num_heads": config.get("num_attention_heads"), "mlp_ratio": config.get("mlp_ratio"),
            "patch_size": config.get("patch_size"), "tubelet_size": config.get("tubelet_size"),
            "resolution": config.get("crop_size") or config.get("image_size"),
            "frames_per_clip": config.get("frames_per_clip"), "layernorm_eps": config.get("layer_norm_eps")}
    return Weights(state=state, config=config, fixed={k: v for k, v in dims.items() if v is not None})


VIDEOMAE_LAYER = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
                  "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}


def read_hf_videomae(path: Path, checkpoint_key: str | None = None) -> Weights:
    """A Hugging Face VideoMAE directory: encoder under `videomae.`; query and value biases, no key bias; a final
    LayerNorm unless the model mean-pools (fine-tuned releases). Decoder and classifier weights are left out."""
    config, weights = read_directory(path, "VideoMAE")
    source = path / "model.safetensors"
    model = (config.get("architectures") or ["VideoMAEForPreTraining"])[0]
    if model not in VIDEOMAE_MODELS:
        raise CheckpointError(f"{path / 'config.json'}: architecture {model} is not a VideoMAE encoder; use a "
                              f"directory of {', '.join(VIDEOMAE_MODELS)}")
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
               if not isinstance(config.get(k), int) or config[k] < 1]
    if missing:
        raise CheckpointError(f"{path / 'config.json'}: no usable {', '.join(missing)} (a positive integer each); "
                              "use the config.json of the release")
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{path / 'config.json'}: hidden_act {config['hidden_act']!r} is not supported (gelu)")
    depth, width = int(config.get("num_hidden_layers", 0)), int(config.get("hidden_size", 0))
    encoder = {k[len("videomae."):]: v for k, v in weights.items() if k.startswith("videomae.")}
    # a final LayerNorm unless the model mean-pools; a config.json that does not say is read off the weights
    final_norm = not config["use_mean_pooling"] if "use_mean_pooling" in config else "layernorm.weight" in encoder
    state: dict[str, torch.Tensor] = {}
    for key in ("weight", "bias"):
        state[f"patch_embed.proj.{key}"] = take(encoder, f"embeddings.patch_embeddings.projection.{key}", source)
        if final_norm:
            state[f"norm.{key}"] = take(encoder, f"layernorm.{key}", source)
    biased = bool(config.get("qv_bias", config.get("qkv_bias", True)))
    for i in range(depth):
        layer = f"encoder.layer.{i}."
        q, k, v = (take(encoder, f"{layer}attention.attention.{name}.weight", source)
                   for name in ("query", "key", "value"))
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v], dim=0)  # [3D, D]
        if biased:
            q_bias, v_bias = (take(encoder, f"{layer}attention.attention.{n}", source) for n in ("q_bias", "v_bias"))
            state[f"blocks.{i}.attn.qkv.bias"] = torch.cat([q_bias, torch.zeros_like(v_bias), v_bias])  # no key bias
        for theirs, ours in VIDEOMAE_LAYER.items():
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.{ours}.{kind}"] = take(encoder, f"{layer}{theirs}.{kind}", source)
    if encoder:
        raise CheckpointError(f"{source}: unexpected key 'videomae.{sorted(encoder)[0]}'"
                              + (f" (+{len(encoder) - 1} more)" if len(encoder) > 1 else ""))
    dims = {"embed_dim": width, "depth": depth, "num_heads": config.get("num_attention_heads"),
            "mlp_ratio": config["intermediate_size"] / width if config.get("intermediate_size") and width else None,
            "patch_size": config.get("patch_size"), "tubelet_size": config.get("tubelet_size"),
            "resolution": config.get("image_size"), "frames_per_clip": config.get("num_frames"),
            "layernorm_eps": config.get("layer_norm_eps"), "qkv_bias": biased,
            "final_norm": "norm" if final_norm else "none"}
    # a fine-tuned (label-supervised) VideoMAE is accepted, and every store and report says so
    return Weights(state=state, config=config, fixed={k: v for k, v in dims.items() if v is not None},
                   fine_tuned=VIDEOMAE_MODELS[model])


def take(encoder: dict[str, torch.Tensor], key: str, source: Path) -> torch.Tensor:
    if key not in encoder:
        raise CheckpointError(f"{source}: missing key 'videomae.{key}'")
    return encoder.pop(key)
