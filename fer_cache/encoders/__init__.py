"""build_encoder: the one way to get a frozen V-JEPA encoder (DESIGN section 8)."""

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from fer_cache.encoders.checkpoint import (
    infer_dims,
    load_state_strict,
    read_hf_directory,
    read_torch_checkpoint,
    sha256_file,
)
from fer_cache.encoders.presets import PRESETS, list_presets
from fer_cache.encoders.vit import VideoViT, ViTConfig
from fer_cache.errors import CheckpointError

FAMILIES = ("vjepa", "vjepa2", "vjepa2-hf")
RANDOM_SEED = 0

__all__ = ["build_encoder", "VideoViT", "ViTConfig", "list_presets", "FAMILIES"]


def build_encoder(family: str = "vjepa", checkpoint: str | Path | None = None,
                  checkpoint_key: str = "target_encoder", arch: str | None = None,
                  embed_dim: int | None = None, depth: int | None = None, num_heads: int | None = None,
                  mlp_ratio: float | None = None, patch_size: int | None = None, tubelet_size: int | None = None,
                  resolution: int | None = None, frames_per_clip: int | None = None,
                  uniform_power: bool = True, seed: int = RANDOM_SEED, device: str | torch.device | None = None,
                  checkpoint_sha256: str | None = None) -> VideoViT:
    """A frozen encoder in eval mode with gradients off; random seeded weights when `checkpoint` is None.

    Dimensions come from, in rising precedence: the checkpoint's own shapes (heads from the preset of the same width
    and depth), the `arch` preset, a Hugging Face config.json, the explicit arguments. patch_size 16 and
    tubelet_size 2 where nothing says otherwise."""
    if family not in FAMILIES:
        raise CheckpointError(f"unknown encoder family '{family}'; use one of: {', '.join(FAMILIES)}")
    hf_config, state = None, None
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if family == "vjepa2-hf":
            if not path.is_dir():
                raise CheckpointError(f"{path}: family vjepa2-hf needs a Hugging Face directory "
                                      "(config.json + model.safetensors)")
            hf_config, state = read_hf_directory(path)
        else:
            if path.is_dir():
                raise CheckpointError(f"{path} is a directory; for a Hugging Face V-JEPA 2 directory use "
                                      "family vjepa2-hf")
            state = read_torch_checkpoint(path, checkpoint_key)
    elif family == "vjepa2-hf":
        raise CheckpointError("family vjepa2-hf needs `checkpoint`: a Hugging Face V-JEPA 2 directory")

    inferred = infer_dims(state) if state is not None else {}
    cfg = resolve_config(family, hf_config, inferred, arch, embed_dim, depth, num_heads, mlp_ratio, patch_size,
                         tubelet_size, resolution, frames_per_clip, uniform_power)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoViT(cfg)
        init_weights(model)
    if state is not None:
        load_state_strict(model, state, str(checkpoint))
    model.checkpoint_name = Path(checkpoint).name if checkpoint is not None else None
    model.checkpoint_sha256 = checkpoint_sha256 or (fingerprint_checkpoint(Path(checkpoint).expanduser())
                                                    if checkpoint is not None else None)
    model.checkpoint_key = checkpoint_key if family != "vjepa2-hf" and checkpoint is not None else None
    model.family, model.arch = family, arch
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def resolve_config(family: str, hf_config: dict | None, inferred: dict, arch: str | None, embed_dim: int | None,
                   depth: int | None, num_heads: int | None, mlp_ratio: float | None, patch_size: int | None,
                   tubelet_size: int | None, resolution: int | None, frames_per_clip: int | None,
                   uniform_power: bool) -> ViTConfig:
    """Checkpoint shapes, then the preset, then HF config.json, then explicit arguments: the later wins."""
    dims: dict = {k: inferred[k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio") if k in inferred}
    patch_size = patch_size or (hf_config or {}).get("patch_size") or inferred.get("patch_size") or 16
    tubelet_size = tubelet_size or (hf_config or {}).get("tubelet_size") or inferred.get("tubelet_size") or 2
    if arch is not None:
        if arch not in PRESETS:
            raise CheckpointError(f"unknown arch '{arch}'; use one of: {', '.join(list_presets())}")
        preset = PRESETS[arch]
        dims.update(embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads,
                    mlp_ratio=preset.mlp_ratio)
    layernorm_eps = 1e-6
    if hf_config is not None:
        dims.update(embed_dim=hf_config["hidden_size"], depth=hf_config["num_hidden_layers"],
                    num_heads=hf_config["num_attention_heads"], mlp_ratio=hf_config.get("mlp_ratio", 4.0))
        layernorm_eps = hf_config.get("layer_norm_eps", layernorm_eps)
        resolution = resolution or hf_config.get("crop_size") or hf_config.get("image_size")
        frames_per_clip = frames_per_clip or hf_config.get("frames_per_clip")
    explicit = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    dims.update({k: v for k, v in explicit.items() if v is not None})
    for key in ("embed_dim", "depth", "num_heads"):
        if key not in dims:
            raise CheckpointError(f"encoder needs `arch` (one of {', '.join(list_presets())}) or an explicit "
                                  f"`{key}`" + (" (the checkpoint's shapes do not say)" if inferred else ""))
    resolution, frames_per_clip = resolution or 224, frames_per_clip or 16
    if dims["embed_dim"] % dims["num_heads"]:
        raise CheckpointError(f"embed_dim {dims['embed_dim']} is not divisible by num_heads {dims['num_heads']}")
    if resolution % patch_size or frames_per_clip % tubelet_size:
        raise CheckpointError(f"resolution {resolution} must be a multiple of patch_size {patch_size} and "
                              f"frames_per_clip {frames_per_clip} of tubelet_size {tubelet_size}")
    return ViTConfig(embed_dim=dims["embed_dim"], depth=dims["depth"], num_heads=dims["num_heads"],
                     mlp_ratio=dims.get("mlp_ratio") or 4.0, patch_size=patch_size, tubelet_size=tubelet_size,
                     resolution=resolution, frames_per_clip=frames_per_clip, use_rope=family != "vjepa",
                     uniform_power=uniform_power, layernorm_eps=layernorm_eps)


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
    """The encoder attributes written into a store (DESIGN section 4)."""
    cfg = model.cfg
    return {"family": model.family, "arch": model.arch, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "patch_size": cfg.patch_size,
            "tubelet_size": cfg.tubelet_size, "resolution": cfg.resolution, "frames_per_clip": cfg.frames_per_clip,
            "uniform_power": cfg.uniform_power, "checkpoint": model.checkpoint_name,
            "checkpoint_sha256": model.checkpoint_sha256, "checkpoint_key": model.checkpoint_key}
