"""Image encoders applied frame by frame (CLIP, SigLIP, DINOv2, DINOv3) from Hugging Face directories. Each frame
of a clip goes through the vision model alone; the clip's tokens are its frames' patch tokens in (frame, row, column)
order, prefix tokens (CLS, registers) dropped, or one pooled vector per frame (`output: cls`).

The models are Hugging Face transformers' own classes (the optional extra `fer-jepa[hf]`), loaded from the local
directory only: four architectures (quick-GELU, attention-pooling heads, SwiGLU and gated MLPs, 2-D rotary positions,
registers) whose one reference implementation is that library, so writing them again would add risk, not fidelity.

Axes: B clips, T frames, C=3 channels, H/W pixels, P patches per frame (H' x W'), D width.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from fer_cache.encoder_entry import DIMENSIONS, EncoderConfig
from fer_cache.encoders.vit import EncoderIdentity
from fer_cache.encoders.weights import Weights, directory_config, read_json
from fer_cache.errors import CheckpointError, ConfigError

OTHER_TOWER = ("text_model.", "text_projection.", "visual_projection.", "logit_scale", "logit_bias")  # not the encoder
Positions = Literal["flag", "always", "rope"]  # CLIP/SigLIP interpolate on request, DINOv2 always, DINOv3 has none


@dataclass(frozen=True, kw_only=True)
class FrameConfig:
    """A frame-wise encoder's shape, with the properties the pipeline reads off any encoder's `cfg`."""
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int
    resolution: int
    frames_per_clip: int
    output: str = "last"
    image_size: int  # the size its position table was trained at (config.json)
    tubelet_size: int = 1  # every frame is encoded alone
    uniform_power: None = None

    @property
    def token_grid(self) -> tuple[int, int, int]:
        side = 1 if self.output == "cls" else self.resolution // self.patch_size
        return self.frames_per_clip, side, side

    @property
    def num_tokens(self) -> int:
        t, h, w = self.token_grid
        return t * h * w

    @property
    def token_width(self) -> int:
        return self.embed_dim


class FrameEncoder(nn.Module):
    """Frozen frame-wise encoder: video [B, 3, T, H, W] (normalised) -> tokens [B, T*P, D], or [B, T, D] for `cls`."""

    def __init__(self, vision: nn.Module, cfg: FrameConfig, identity: EncoderIdentity, *, prefix_tokens: int,
                 interpolate: bool):
        super().__init__()
        self.vision, self.cfg, self.identity = vision, cfg, identity
        self.prefix_tokens = prefix_tokens  # CLS and register tokens before the patches
        self.extra = {"interpolate_pos_encoding": True} if interpolate else {}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = video.shape
        frames = video.transpose(1, 2).reshape(B * T, C, H, W)  # clip b's frame t is row b*T + t
        out = self.vision(pixel_values=frames, **self.extra)
        if self.cfg.output == "cls":
            return out.pooler_output.reshape(B, T, -1)  # [B, T, D]
        tokens = out.last_hidden_state[:, self.prefix_tokens:]  # [B*T, P, D]
        return tokens.reshape(B, T * tokens.shape[1], tokens.shape[2])  # [B, T*P, D]

    def flops_per_clip(self) -> float:
        """Multiply-adds x 2 of one clip (every frame's matmuls and attention), for TFLOP/s reporting."""
        cfg = self.cfg
        n, D = (cfg.resolution // cfg.patch_size) ** 2 + self.prefix_tokens, cfg.embed_dim
        hidden = int(D * cfg.mlp_ratio)
        per_block = n * D * 3 * D + n * D * D + 2 * n * D * hidden + 2 * n * n * D
        return 2.0 * cfg.frames_per_clip * (n * D * 3 * cfg.patch_size**2 + cfg.depth * per_block)


def read_image_directory(path: Path, checkpoint_key: str | None = None) -> Weights:
    """config.json of a Hugging Face image-model directory; the weights are loaded by transformers at build time."""
    if not (path / "model.safetensors").is_file() and not (path / "pytorch_model.bin").is_file():
        raise CheckpointError(f"{path / 'model.safetensors'} not found: a Hugging Face directory holds config.json "
                              "and model.safetensors")
    config = directory_config(path)
    if config is None:
        raise CheckpointError(f"{path / 'config.json'}: missing or not valid JSON; use the config.json of the release")
    return Weights(state=None, config=config)


def frame_wise(model_class: str, positions: Positions) -> Callable[..., FrameEncoder]:
    """The builder of one frame-wise family: its transformers class and how its positions meet other sizes."""
    def build(spec: EncoderConfig, family, weights: Weights, *, identity: EncoderIdentity,
              seed: int = 0) -> FrameEncoder:
        vision = weights.config.get("vision_config", weights.config)  # CLIP/SigLIP directories hold both towers
        cfg = frame_config(spec, family, vision)
        model = load_vision_model(spec.checkpoint, model_class)
        interpolate = positions == "flag" and cfg.resolution != cfg.image_size
        encoder = FrameEncoder(model, cfg, identity, prefix_tokens=0, interpolate=interpolate)
        encoder.prefix_tokens = count_prefix_tokens(encoder, spec)
        return encoder
    return build


def frame_config(spec: EncoderConfig, family, vision: dict) -> FrameConfig:
    """The shape from config.json; a dimension set in data.yaml must agree with it, an `arch` has no meaning here."""
    where = spec.checkpoint / "config.json"
    if spec.arch is not None:
        raise ConfigError(f"{spec.where('arch')}: family {family.name} reads its dimensions from {where}; remove "
                          "`arch`")
    width, heads = vision.get("hidden_size"), vision.get("num_attention_heads")
    hidden = vision.get("intermediate_size") or (vision.get("mlp_ratio") or 4) * (width or 0)
    image_size = vision.get("image_size")
    if isinstance(image_size, list):
        image_size = image_size[0]
    read = {"embed_dim": width, "depth": vision.get("num_hidden_layers"), "num_heads": heads,
            "mlp_ratio": hidden / width if width else None, "patch_size": vision.get("patch_size"), "tubelet_size": 1}
    missing = [k for k, v in read.items() if not v]
    if missing or not image_size:
        raise CheckpointError(f"{where}: no usable {', '.join(missing or ['image_size'])}; use the release's config")
    for key in DIMENSIONS:
        given = getattr(spec, key)
        if given is not None and not math.isclose(given, read[key]):
            raise ConfigError(f"{spec.where(key)}: {key} {given} differs from {where}'s {read[key]:g}; remove it "
                              "(the dimensions come from config.json)")
    resolution = spec.resolution or crop_size(spec.checkpoint) or image_size
    if resolution % read["patch_size"]:
        nearest = max(read["patch_size"], resolution // read["patch_size"] * read["patch_size"])
        raise ConfigError(f"{spec.where('resolution')}: resolution {resolution} is not a multiple of patch_size "
                          f"{read['patch_size']}; use e.g. {nearest}")
    return FrameConfig(**{k: v for k, v in read.items() if k != "tubelet_size"}, resolution=resolution,
                       frames_per_clip=spec.frames_per_clip or 16, output=spec.output, image_size=image_size)


def crop_size(path: Path) -> int | None:
    """The input size of preprocessor_config.json (crop_size, else size), the size the model is used at."""
    config = read_json(path / "preprocessor_config.json") or {}
    for key in ("crop_size", "size"):
        size = config.get(key)
        if isinstance(size, dict) and isinstance(size.get("height"), int):
            return size["height"]
        if isinstance(size, int) and key == "crop_size":
            return size
    return None


def load_vision_model(path: Path, model_class: str) -> nn.Module:
    """The vision tower through transformers, local files only, every vision weight present; the other tower of a
    CLIP or SigLIP directory is accounted for and left out, any other stray weight refused."""
    try:
        import transformers
    except ImportError as exc:
        raise CheckpointError(f"{path}: frame-wise encoders need Hugging Face transformers; install the extra: pip "
                              "install 'fer-jepa[hf]'") from exc
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        model, info = getattr(transformers, model_class).from_pretrained(
            path, local_files_only=True, output_loading_info=True, dtype=torch.float32)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: transformers could not load it as {model_class} ({reason})") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or ())
    stray = sorted(k for k in info.get("unexpected_keys") or () if not k.startswith(OTHER_TOWER))
    for kind, keys in (("missing", missing), ("unexpected", stray), ("mis-shaped", sorted(info.get(
            "mismatched_keys") or ()))):
        if keys:
            raise CheckpointError(f"{path}: {kind} key '{keys[0]}'" + (f" (+{len(keys) - 1} more)" if len(keys) > 1
                                                                        else "") + f" for {model_class}")
    return model


def count_prefix_tokens(encoder: FrameEncoder, spec: EncoderConfig) -> int:
    """CLS and register tokens, counted on one blank frame; also checks that `output: cls` has a pooled vector."""
    cfg = encoder.cfg
    with torch.inference_mode():
        out = encoder.vision(pixel_values=torch.zeros(1, 3, cfg.resolution, cfg.resolution), **encoder.extra)
    if cfg.output == "cls" and getattr(out, "pooler_output", None) is None:
        raise ConfigError(f"{spec.where('output')}: this {encoder.identity.family} model has no pooled output "
                          "(no head in config.json); use output last")
    return out.last_hidden_state.shape[1] - (cfg.resolution // cfg.patch_size) ** 2
