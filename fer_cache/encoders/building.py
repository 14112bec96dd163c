"""The builder of every video-ViT family (V-JEPA 1/2/2.1, VideoMAE, MARLIN): dimensions resolved from the
checkpoint, the preset, config.json and the entry, then VideoViT built and loaded strictly."""

import math
from dataclasses import replace

import torch
import torch.nn as nn

from fer_cache.encoder_entry import EncoderConfig
from fer_cache.encoders.checkpoint import check_position_table, infer_dims, load_state_strict
from fer_cache.encoders.vit import EncoderIdentity, VideoViT, ViTConfig
from fer_cache.encoders.weights import Weights
from fer_cache.errors import ConfigError

RANDOM_SEED = 0
GRID = ("resolution", "frames_per_clip")  # what a fixed position table is trained for


def build_vit(spec: EncoderConfig, family, weights: Weights | None, *, identity: EncoderIdentity,
              seed: int = RANDOM_SEED) -> VideoViT:
    """VideoViT with the checkpoint's weights (every key accounted for), or seeded random weights without one."""
    state = weights.state if weights is not None else None
    inferred = infer_dims(state, family.presets) if state is not None else {}
    inferred |= grid_of_table(state, spec, inferred) if state is not None else {}
    cfg, notes = resolve_config(spec, family, fixed=weights.fixed if weights is not None else {}, inferred=inferred)
    check_shape(spec, cfg, inferred)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoViT(cfg, replace(identity, notes=(*notes, *(weights.notes if weights else ()))))
        init_weights(model)
    if state is not None:
        check_position_table(state, cfg, source=str(spec.checkpoint))
        load_state_strict(model, state, str(spec.checkpoint))
    return model


def resolve_config(spec: EncoderConfig, family, *, fixed: dict, inferred: dict) -> tuple[ViTConfig, list[str]]:
    """Checkpoint shapes, then the preset, then HF config.json, then explicit settings: the later wins. Returns the
    config and notes on choices a reader of the store should know about."""
    values: dict = dict(inferred)
    if spec.arch is not None:
        if spec.arch not in family.presets:
            raise ConfigError(f"{spec.where('arch')}: unknown arch '{spec.arch}' for family {family.name}; use one "
                              f"of: {', '.join(sorted(family.presets))}")
        preset = family.presets[spec.arch]
        values.update(embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads,
                      mlp_ratio=preset.mlp_ratio)
    values.update(fixed)
    explicit = {f: getattr(spec, f) for f in ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size",
                                              "tubelet_size", "resolution", "frames_per_clip")}
    if family.architecture.get("positions") == "sincos1d":  # a table fixed to config.json's grid (VideoMAE)
        for key in GRID:
            if key in fixed and explicit[key] is not None and explicit[key] != fixed[key]:
                raise ConfigError(f"{spec.where(key)}: {key} {explicit[key]} differs from {spec.checkpoint}/"
                                  f"config.json's {fixed[key]}, the grid its position table was trained for; set "
                                  f"{key}: {fixed[key]}")
    values.update({k: v for k, v in explicit.items() if v is not None})
    notes = []
    if "num_heads" not in values and family.head_dim and values.get("embed_dim", 0) % family.head_dim == 0:
        values["num_heads"] = values["embed_dim"] // family.head_dim
        notes.append(f"num_heads {values['num_heads']} from {family.title}'s {family.head_dim}-channel heads (the "
                     "weights do not say); set num_heads for a checkpoint trained otherwise")
    for key in ("embed_dim", "depth", "num_heads"):
        if key not in values:
            raise ConfigError(f"{spec.where(key)}: encoder needs `arch` (one of {', '.join(sorted(family.presets))}) "
                              f"or an explicit `{key}`" + (" (the checkpoint's shapes do not say)" if inferred else ""))
    for key in ("embed_dim", "depth", "num_heads", "patch_size", "tubelet_size", "resolution", "frames_per_clip"):
        if key in values and (not isinstance(values[key], int) or values[key] < 1):
            raise ConfigError(f"{spec.where(key)}: {key} must be a positive integer, got {values[key]!r}")
    if values["embed_dim"] % values["num_heads"]:
        key = "num_heads" if spec.num_heads is not None or spec.embed_dim is None else "embed_dim"
        raise ConfigError(f"{spec.where(key)}: embed_dim {values['embed_dim']} is not divisible by num_heads "
                          f"{values['num_heads']}; give a head count that divides the width")
    settings = {"uniform_power": spec.uniform_power if family.uses_uniform_power else None, "output": spec.output}
    settings |= {k: v for k, v in family.architecture.items() if k != "rope_grid"} | values
    cfg = ViTConfig(**settings)
    if family.architecture.get("rope_grid") == "pretraining":
        cfg = replace(cfg, rope_grid=pretraining_grid(cfg.patch_size, cfg.resolution))
    check_grid(spec, cfg, family)
    return cfg, notes + head_notes(cfg, family)


def grid_of_table(state: dict, spec: EncoderConfig, inferred: dict) -> dict:
    """A stored position table fixes T' x H' x W': the resolution follows from the frames (or the frames from the
    resolution) where only one is given, so a MARLIN or V-JEPA 1 file needs no size it already says."""
    table, patch, tubelet = state.get("pos_embed"), inferred.get("patch_size"), inferred.get("tubelet_size")
    if table is None or patch is None or tubelet is None or (spec.resolution is None) == (spec.frames_per_clip is None):
        return {}
    tokens = table.shape[1]
    if spec.resolution is None:
        per_frame = tokens / max(1, spec.frames_per_clip // tubelet)
        side = math.isqrt(int(per_frame))
        return {"resolution": side * patch} if side * side == per_frame else {}
    per_frame = (spec.resolution // patch) ** 2
    return {"frames_per_clip": tokens // per_frame * tubelet} if per_frame and tokens % per_frame == 0 else {}


def check_shape(spec: EncoderConfig, cfg: ViTConfig, inferred: dict) -> None:
    """An `arch` or explicit width/depth that does not fit the checkpoint, said in the checkpoint's terms before any
    key-by-key comparison (which would list a hundred missing keys)."""
    has = (inferred.get("depth", cfg.depth), inferred.get("embed_dim", cfg.embed_dim))
    if has != (cfg.depth, cfg.embed_dim):
        key = "arch" if spec.arch else ("depth" if spec.depth is not None else "embed_dim")
        raise ConfigError(f"{spec.where(key)}: the checkpoint has {has[0]} blocks of width {has[1]}, but the entry "
                          f"builds {cfg.depth} of width {cfg.embed_dim}; remove `{key}` to take the checkpoint's")


def check_grid(spec: EncoderConfig, cfg: ViTConfig, family) -> None:
    if cfg.resolution % cfg.patch_size:
        nearest = max(cfg.patch_size, cfg.resolution // cfg.patch_size * cfg.patch_size)
        raise ConfigError(f"{spec.where('resolution')}: resolution {cfg.resolution} is not a multiple of patch_size "
                          f"{cfg.patch_size}; use e.g. {nearest}")
    if cfg.frames_per_clip % cfg.tubelet_size:
        raise ConfigError(f"{spec.where('frames_per_clip')}: frames_per_clip {cfg.frames_per_clip} is not a multiple "
                          f"of tubelet_size {cfg.tubelet_size}; use e.g. "
                          f"{max(cfg.tubelet_size, cfg.frames_per_clip // cfg.tubelet_size * cfg.tubelet_size)}")
    if cfg.final_norm == "per_layer" and cfg.depth < 4:
        raise ConfigError(f"{spec.where('depth')}: depth {cfg.depth}: a {family.title} encoder has 4 hierarchical "
                          "layers, so at least 4 blocks")


def pretraining_grid(patch_size: int, resolution: int) -> int:
    """V-JEPA 2.1 pretrained at 256 px (252 px with patch 14); its rotary positions are rescaled to that grid."""
    return {16: 16, 14: 18}.get(patch_size, resolution // patch_size)


def head_notes(cfg: ViTConfig, family) -> list[str]:
    """Heads cannot be read off the weights: a count that no preset of this width and depth uses is worth a note."""
    for name, preset in family.presets.items():
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
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
