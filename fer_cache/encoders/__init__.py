"""build_encoder: the one way to get a frozen V-JEPA encoder (DESIGN section 8)."""

import hashlib
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn as nn

from fer_cache.config import EncoderConfig
from fer_cache.encoders.checkpoint import (
    check_family,
    infer_dims,
    load_state_strict,
    read_hf_directory,
    read_torch_checkpoint,
    sha256_file,
)
from fer_cache.encoders.presets import PRESETS, list_presets
from fer_cache.encoders.vit import EncoderIdentity, VideoViT, ViTConfig
from fer_cache.errors import CheckpointError, ConfigError

FAMILIES = ("vjepa", "vjepa2", "vjepa2-hf")
RANDOM_SEED = 0

__all__ = ["build_encoder", "load_encoder", "EncoderIdentity", "VideoViT", "ViTConfig", "list_presets", "FAMILIES"]


def build_encoder(*, device: str | torch.device | None = None, seed: int = RANDOM_SEED,
                  checkpoint_sha256: str | None = None, **settings) -> VideoViT:
    """A frozen encoder from the keyword settings of an encoder entry in data.yaml (family, checkpoint,
    checkpoint_key, arch, embed_dim, depth, num_heads, mlp_ratio, patch_size, tubelet_size, resolution,
    frames_per_clip, uniform_power); random seeded weights when checkpoint is None."""
    known = {f.name for f in fields(EncoderConfig)} - {"name", "line", "config_file"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown encoder setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if settings.get("checkpoint") is not None:
        settings["checkpoint"] = Path(settings["checkpoint"]).expanduser()
    return load_encoder(EncoderConfig(name="", **settings), device=device, seed=seed,
                        checkpoint_sha256=checkpoint_sha256)


def load_encoder(spec: EncoderConfig, *, device: str | torch.device | None = None, seed: int = RANDOM_SEED,
                 checkpoint_sha256: str | None = None) -> VideoViT:
    """A frozen encoder in eval mode with gradients off, built from a data.yaml encoder entry.

    Dimensions come from, in rising precedence: ViTConfig's defaults, the checkpoint's own shapes (heads from the
    preset of the same width and depth), the `arch` preset, a Hugging Face config.json, the explicit settings."""
    if spec.family not in FAMILIES:
        raise ConfigError(f"unknown encoder family '{spec.family}'; use one of: {', '.join(FAMILIES)}")
    hf_config, state = read_weights(spec)
    cfg, notes = resolve_config(spec, hf_config, infer_dims(state) if state is not None else {})
    path = spec.checkpoint
    identity = EncoderIdentity(
        family=spec.family, arch=spec.arch, checkpoint=path.name if path is not None else None,
        checkpoint_sha256=checkpoint_sha256 or (fingerprint_checkpoint(path) if path is not None else None),
        checkpoint_key=spec.checkpoint_key if spec.family != "vjepa2-hf" and path is not None else None,
        notes=tuple(notes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoViT(cfg, identity)
        init_weights(model)
    if state is not None:
        check_family(spec.family, state, cfg, source=str(path))
        load_state_strict(model, state, str(path))
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def read_weights(spec: EncoderConfig) -> tuple[dict | None, dict[str, torch.Tensor] | None]:
    """(Hugging Face config.json or None, encoder state dict or None) of an entry's checkpoint."""
    if spec.checkpoint is None:
        if spec.family == "vjepa2-hf":
            raise CheckpointError("family vjepa2-hf needs `checkpoint`: a Hugging Face V-JEPA 2 directory")
        return None, None
    path = Path(spec.checkpoint)
    if spec.family == "vjepa2-hf":
        if not path.is_dir():
            raise CheckpointError(f"{path}: family vjepa2-hf needs a Hugging Face directory "
                                  "(config.json + model.safetensors)")
        return read_hf_directory(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; for a Hugging Face V-JEPA 2 directory use family vjepa2-hf")
    return None, read_torch_checkpoint(path, spec.checkpoint_key)


def resolve_config(spec: EncoderConfig, hf_config: dict | None, inferred: dict) -> tuple[ViTConfig, list[str]]:
    """Checkpoint shapes, then the preset, then HF config.json, then explicit settings: the later wins. Returns the
    config and notes on choices a reader of the store should know about."""
    values: dict = dict(inferred)
    if spec.arch is not None:
        if spec.arch not in PRESETS:
            raise ConfigError(f"unknown arch '{spec.arch}'; use one of: {', '.join(list_presets())}")
        preset = PRESETS[spec.arch]
        values.update(embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads,
                      mlp_ratio=preset.mlp_ratio)
    if hf_config is not None:
        hf = {"embed_dim": hf_config.get("hidden_size"), "depth": hf_config.get("num_hidden_layers"),
              "num_heads": hf_config.get("num_attention_heads"), "mlp_ratio": hf_config.get("mlp_ratio"),
              "patch_size": hf_config.get("patch_size"), "tubelet_size": hf_config.get("tubelet_size"),
              "resolution": hf_config.get("crop_size") or hf_config.get("image_size"),
              "frames_per_clip": hf_config.get("frames_per_clip"), "layernorm_eps": hf_config.get("layer_norm_eps")}
        values.update({k: v for k, v in hf.items() if v is not None})
    explicit = {f: getattr(spec, f) for f in ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size",
                                              "tubelet_size", "resolution", "frames_per_clip")}
    values.update({k: v for k, v in explicit.items() if v is not None})
    for key in ("embed_dim", "depth", "num_heads"):
        if key not in values:
            raise ConfigError(f"encoder needs `arch` (one of {', '.join(list_presets())}) or an explicit `{key}`"
                              + (" (the checkpoint's shapes do not say)" if inferred else ""))
    if values["embed_dim"] % values["num_heads"]:
        raise ConfigError(f"embed_dim {values['embed_dim']} is not divisible by num_heads {values['num_heads']}")
    cfg = ViTConfig(use_rope=spec.family != "vjepa", uniform_power=spec.uniform_power if spec.family == "vjepa"
                    else None, **values)
    if cfg.resolution % cfg.patch_size or cfg.frames_per_clip % cfg.tubelet_size:
        raise ConfigError(f"resolution {cfg.resolution} must be a multiple of patch_size {cfg.patch_size} and "
                          f"frames_per_clip {cfg.frames_per_clip} of tubelet_size {cfg.tubelet_size}")
    return cfg, head_notes(cfg)


def head_notes(cfg: ViTConfig) -> list[str]:
    """Heads cannot be read off the weights: a count that no preset of this width and depth uses is worth a note."""
    for name, preset in PRESETS.items():
        if (preset.embed_dim, preset.depth) == (cfg.embed_dim, cfg.depth) and preset.num_heads != cfg.num_heads:
            return [f"num_heads {cfg.num_heads} differs from the {name} preset's {preset.num_heads} for width "
                    f"{cfg.embed_dim} and depth {cfg.depth}; the official checkpoints of that size use "
                    f"{preset.num_heads}"]
    return []


def init_weights(model: nn.Module) -> None:
    """V-JEPA's initialisation (truncated normal 0.02), used for the seeded random encoder."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def fingerprint_checkpoint(path: Path) -> str:
    """sha256 of a checkpoint file (or of a HF directory's files), computed once per process."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    key = (str(path.resolve()), max(p.stat().st_mtime for p in files), sum(p.stat().st_size for p in files))
    if key not in _SHA_CACHE:
        hashes = [sha256_file(p) for p in files]
        _SHA_CACHE[key] = hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()
    return _SHA_CACHE[key]


def describe_encoder(model: VideoViT) -> dict:
    """The encoder attributes written into a store (DESIGN section 4): what was really used."""
    cfg, identity = model.cfg, model.identity
    return {"family": identity.family, "arch": identity.arch, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "patch_size": cfg.patch_size,
            "tubelet_size": cfg.tubelet_size, "resolution": cfg.resolution, "frames_per_clip": cfg.frames_per_clip,
            "uniform_power": cfg.uniform_power, "checkpoint": identity.checkpoint,
            "checkpoint_sha256": identity.checkpoint_sha256, "checkpoint_key": identity.checkpoint_key}
