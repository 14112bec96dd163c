"""build_encoder: the one way to get a frozen encoder (DESIGN section 8). The families, each one entry with its
behaviour: `families.py`."""

from dataclasses import fields
from pathlib import Path

import torch
import torch.nn as nn

from fer_cache.encoder_entry import ENCODER_SETTINGS, EncoderConfig
from fer_cache.encoders.building import RANDOM_SEED
from fer_cache.encoders.families import FAMILIES
from fer_cache.encoders.identify import fingerprint_checkpoint, read_weights
from fer_cache.encoders.presets import list_presets
from fer_cache.encoders.vit import EncoderIdentity, VideoViT, ViTConfig
from fer_cache.errors import ConfigError

__all__ = ["build_encoder", "load_encoder", "describe_encoder", "EncoderIdentity", "VideoViT", "ViTConfig",
           "list_presets", "FAMILIES"]


def build_encoder(*, device: str | torch.device | None = None, seed: int = RANDOM_SEED,
                  checkpoint_sha256: str | None = None, **settings) -> nn.Module:
    """A frozen encoder from the keyword settings of an encoder entry in data.yaml (family, checkpoint,
    checkpoint_key, arch, embed_dim, depth, num_heads, mlp_ratio, patch_size, tubelet_size, resolution,
    frames_per_clip, uniform_power, output); random seeded weights when checkpoint is None."""
    known = {f.name for f in fields(EncoderConfig)} - {"name", "line", "config_file", "key_lines"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown encoder setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "family" not in settings:
        raise ConfigError(f"build_encoder needs family=, one of: {', '.join(FAMILIES)}")
    for key, kind in ENCODER_SETTINGS.items():
        value = settings.get(key)
        wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if value is not None and wrong and not (kind is float and isinstance(value, int)):
            raise ConfigError(f"encoder setting {key}: expected {kind.__name__}, got {value!r}")
    if settings.get("checkpoint") is not None:
        settings["checkpoint"] = Path(settings["checkpoint"]).expanduser()
    return load_encoder(EncoderConfig(name="", **settings), device=device, seed=seed,
                        checkpoint_sha256=checkpoint_sha256)


def load_encoder(spec: EncoderConfig, *, device: str | torch.device | None = None, seed: int = RANDOM_SEED,
                 checkpoint_sha256: str | None = None) -> nn.Module:
    """A frozen encoder in eval mode with gradients off, built by its family from a data.yaml encoder entry: video
    [B, 3, T, H, W] normalised with `model.normalisation` -> tokens [B, N, D] on the grid `model.cfg.token_grid`."""
    if spec.family not in FAMILIES:
        raise ConfigError(f"{spec.where('family')}: 'family' must be one of {', '.join(FAMILIES)}, got "
                          f"{spec.family!r}")
    family = FAMILIES[spec.family]
    if spec.output not in family.outputs:
        raise ConfigError(f"{spec.where('output')}: 'output' must be one of {', '.join(family.outputs)} for family "
                          f"{family.name}, got {spec.output!r}")
    weights = read_weights(spec, family)
    path = spec.checkpoint
    identity = EncoderIdentity(
        family=spec.family, arch=spec.arch, checkpoint=path.name if path is not None else None,
        checkpoint_sha256=checkpoint_sha256 or (fingerprint_checkpoint(path) if path is not None else None),
        checkpoint_key=(spec.checkpoint_key or family.default_key) if family.layout == "file" and path else None,
        fine_tuned=weights.fine_tuned if weights is not None else None)
    model = family.build(spec, family, weights, identity=identity, seed=seed)
    model.normalisation = family.normalisation(path)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def describe_encoder(model: nn.Module) -> dict:
    """The encoder attributes written into a store (DESIGN section 4): what was really used."""
    cfg, identity = model.cfg, model.identity
    described = {"family": identity.family, "arch": identity.arch, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
                 "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "patch_size": cfg.patch_size,
                 "tubelet_size": cfg.tubelet_size, "resolution": cfg.resolution,
                 "frames_per_clip": cfg.frames_per_clip, "uniform_power": cfg.uniform_power,
                 "checkpoint": identity.checkpoint, "checkpoint_sha256": identity.checkpoint_sha256,
                 "checkpoint_key": identity.checkpoint_key}
    if len(FAMILIES[identity.family].outputs) > 1 or cfg.token_width != cfg.embed_dim:
        described.update(output=cfg.output, token_width=cfg.token_width)
    if identity.fine_tuned:
        described["fine_tuned"] = identity.fine_tuned
    return described
