"""build_encoder: the one way to get a frozen video encoder (DESIGN section 8). Families: `families.py`."""

import hashlib
import json
from dataclasses import fields, replace
from pathlib import Path

import torch
import torch.nn as nn

from fer_cache.encoders.checkpoint import (
    check_position_table,
    infer_dims,
    load_state_strict,
    read_torch_checkpoint,
    read_vjepa21_checkpoint,
    sha256_file,
)
from fer_cache.encoders.families import FAMILIES, EncoderConfig, Family, family_of_model_type, family_of_state
from fer_cache.encoders.families import pretraining_grid as rope_pretraining_grid
from fer_cache.encoders.hf import fine_tuning_note, read_hf_videomae, read_hf_vjepa2
from fer_cache.encoders.presets import list_presets
from fer_cache.encoders.vit import EncoderIdentity, VideoViT, ViTConfig
from fer_cache.errors import CheckpointError, ConfigError

RANDOM_SEED = 0
READERS = {  # a family's `reader` -> (path, checkpoint key) -> (config.json or None, state dict, settings it fixes)
    "training_checkpoint": lambda path, key: (None, read_torch_checkpoint(path, key), {}),
    "vjepa21_checkpoint": lambda path, key: vjepa21_weights(read_vjepa21_checkpoint(path, key)),
    "hf_vjepa2": lambda path, key: read_hf_vjepa2(path),
    "hf_videomae": lambda path, key: read_hf_videomae(path),
}


def vjepa21_weights(state: dict[str, torch.Tensor]) -> tuple[None, dict[str, torch.Tensor], dict]:
    """V-JEPA 2.1 encoders are built with a video modality embedding unless `modality_embedding` was off."""
    return None, state, {"modality_embed": "video_mod_embed" in state}


__all__ = ["build_encoder", "load_encoder", "EncoderIdentity", "VideoViT", "ViTConfig", "list_presets", "FAMILIES"]


def build_encoder(*, device: str | torch.device | None = None, seed: int = RANDOM_SEED,
                  checkpoint_sha256: str | None = None, **settings) -> VideoViT:
    """A frozen encoder from the keyword settings of an encoder entry in data.yaml (family, checkpoint,
    checkpoint_key, arch, embed_dim, depth, num_heads, mlp_ratio, patch_size, tubelet_size, resolution,
    frames_per_clip, uniform_power, output); random seeded weights when checkpoint is None."""
    known = {f.name for f in fields(EncoderConfig)} - {"name", "line", "config_file", "key_lines"}
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
    family = FAMILIES[spec.family]
    if spec.output not in family.outputs:
        raise ConfigError(f"{spec.where('output')}: 'output' must be one of {', '.join(family.outputs)} for family "
                          f"{family.name}, got {spec.output!r}")
    hf_config, state, fixed = read_weights(spec, family)
    cfg, notes = resolve_config(spec, family, fixed=fixed,
                                inferred=infer_dims(state, family) if state is not None else {})
    path = spec.checkpoint
    identity = EncoderIdentity(
        family=spec.family, arch=spec.arch, checkpoint=path.name if path is not None else None,
        checkpoint_sha256=checkpoint_sha256 or (fingerprint_checkpoint(path) if path is not None else None),
        checkpoint_key=(spec.checkpoint_key or family.default_key) if family.layout == "file" and path else None,
        notes=tuple(notes), fine_tuned=fine_tuning_note(spec.family, hf_config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoViT(cfg, identity)
        init_weights(model)
    if state is not None:
        if spec.family == "vjepa":
            check_position_table(state, cfg, source=str(path))
        load_state_strict(model, state, str(path))
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def read_weights(spec: EncoderConfig, family: Family) -> tuple[dict | None, dict[str, torch.Tensor] | None, dict]:
    """(config.json or None, encoder state dict or None, settings the checkpoint fixes) of an entry's checkpoint;
    a checkpoint of another family is refused in one line that names the right one."""
    kind = "a Hugging Face directory (config.json + model.safetensors)" if family.layout == "directory" else \
        "a training checkpoint file"
    if spec.checkpoint is None:
        if family.layout == "directory":
            raise CheckpointError(f"family {family.name} needs `checkpoint`: {kind}")
        return None, None, {}
    path = Path(spec.checkpoint)
    if path.is_dir() != (family.layout == "directory") and (path.is_dir() or path.is_file()):
        if path.is_dir():
            other = family_of_model_type(directory_model_type(path))
            hint = f"; a {FAMILIES[other].title} directory: use family {other}" if other else \
                "; for a Hugging Face directory use family vjepa2-hf or videomae"
            raise CheckpointError(f"{path} is a directory, but family {family.name} reads {kind}{hint}")
        raise CheckpointError(f"{path} is a file, but family {family.name} reads {kind}; for a training checkpoint "
                              "use family vjepa, vjepa2 or vjepa2.1")
    if family.layout == "directory":
        other = family_of_model_type(directory_model_type(path))
        if other not in (None, family.name):
            raise CheckpointError(f"{path}: {FAMILIES[other].evidence}, not {family.title}; use family {other}")
    hf_config, state, fixed = READERS[family.reader](path, spec.checkpoint_key or family.default_key)
    if family.layout == "file":
        other = family_of_state(state)
        if other != family.name:
            raise CheckpointError(f"{path}: {FAMILIES[other].evidence}; a {FAMILIES[other].title} checkpoint? "
                                  f"use family {other}")
    return hf_config, state, fixed


def directory_model_type(path: Path) -> str | None:
    """config.json's model_type, or None where there is none to read (the reader then explains)."""
    try:
        return json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_config(spec: EncoderConfig, family: Family, *, fixed: dict, inferred: dict) -> tuple[ViTConfig, list[str]]:
    """Checkpoint shapes, then the preset, then HF config.json, then explicit settings: the later wins. Returns the
    config and notes on choices a reader of the store should know about."""
    values: dict = dict(inferred)
    if spec.arch is not None:
        if spec.arch not in family.presets:
            raise ConfigError(f"unknown arch '{spec.arch}' for family {family.name}; use one of: "
                              f"{', '.join(sorted(family.presets))}")
        preset = family.presets[spec.arch]
        values.update(embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads,
                      mlp_ratio=preset.mlp_ratio)
    values.update(fixed)
    explicit = {f: getattr(spec, f) for f in ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size",
                                              "tubelet_size", "resolution", "frames_per_clip")}
    values.update({k: v for k, v in explicit.items() if v is not None})
    if "num_heads" not in values and family.head_dim and values.get("embed_dim", 0) % family.head_dim == 0:
        values["num_heads"] = values["embed_dim"] // family.head_dim
    for key in ("embed_dim", "depth", "num_heads"):
        if key not in values:
            raise ConfigError(f"encoder needs `arch` (one of {', '.join(sorted(family.presets))}) or an explicit "
                              f"`{key}`" + (" (the checkpoint's shapes do not say)" if inferred else ""))
    if values["embed_dim"] % values["num_heads"]:
        key = "num_heads" if spec.num_heads is not None or spec.embed_dim is None else "embed_dim"
        raise ConfigError(f"{spec.where(key)}: embed_dim {values['embed_dim']} is not divisible by num_heads "
                          f"{values['num_heads']}; give a head count that divides the width")
    settings = {"uniform_power": spec.uniform_power if family.uses_uniform_power else None, "output": spec.output}
    settings |= {k: v for k, v in family.architecture.items() if k != "rope_grid"} | values
    cfg = ViTConfig(**settings)
    if family.architecture.get("rope_grid") == "pretraining":
        cfg = replace(cfg, rope_grid=rope_pretraining_grid(cfg.patch_size, cfg.resolution))
    if cfg.resolution % cfg.patch_size:
        nearest = max(cfg.patch_size, cfg.resolution // cfg.patch_size * cfg.patch_size)
        raise ConfigError(f"{spec.where('resolution')}: resolution {cfg.resolution} is not a multiple of patch_size "
                          f"{cfg.patch_size}; use e.g. {nearest}")
    if cfg.frames_per_clip % cfg.tubelet_size:
        raise ConfigError(f"{spec.where('frames_per_clip')}: frames_per_clip {cfg.frames_per_clip} is not a multiple "
                          f"of tubelet_size {cfg.tubelet_size}; use e.g. "
                          f"{max(cfg.tubelet_size, cfg.frames_per_clip // cfg.tubelet_size * cfg.tubelet_size)}")
    if cfg.final_norm == "per_layer" and cfg.depth < 4:
        raise ConfigError(f"depth {cfg.depth}: a {family.title} encoder has 4 hierarchical layers, so at least 4 "
                          "blocks")
    return cfg, head_notes(cfg, family)


def head_notes(cfg: ViTConfig, family: Family) -> list[str]:
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
