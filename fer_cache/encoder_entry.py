"""One encoder entry of data.yaml: what the user wrote, before any checkpoint is read. Plain data, no torch: config
parsing builds it, `fer_cache.encoders` turns it into a model."""

from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(kw_only=True, frozen=True)
class EncoderConfig:
    """The keywords of `build_encoder`; None means: from the checkpoint, its config.json or the preset."""
    name: str
    family: str = "vjepa"
    checkpoint: Path | None = None
    checkpoint_key: str | None = None  # None: the family's default (target_encoder for training checkpoints)
    arch: str | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    patch_size: int | None = None  # None: from the checkpoint, else 16
    tubelet_size: int | None = None  # None: from the checkpoint, else 2
    resolution: int | None = None
    frames_per_clip: int | None = None
    uniform_power: bool = True
    output: str = "last"  # V-JEPA 2.1 `hierarchical`: four normed layers side by side; frame-wise `cls`: one per frame
    line: int = 0
    config_file: str = "data.yaml"
    key_lines: dict[str, int] = field(default_factory=dict, compare=False)  # data.yaml line of each key

    def with_frames(self, frames_per_clip: int) -> "EncoderConfig":
        return replace(self, frames_per_clip=frames_per_clip)

    def where(self, key: str) -> str:
        """Where a setting was written, for messages: `data.yaml line 12 (encoders.tiny.num_heads)`; from the
        Python API, the keyword."""
        if not self.name:
            return f"encoder setting {key}"
        if key == "frames_per_clip" and key not in self.key_lines:
            return f"{self.config_file} (extraction.frames_per_clip, used by encoders.{self.name})"
        return f"{self.config_file} line {self.key_lines.get(key, self.line)} (encoders.{self.name}.{key})"


ENCODER_SETTINGS = {"family": str, "checkpoint_key": str, "arch": str, "embed_dim": int, "depth": int,
                    "num_heads": int, "mlp_ratio": float, "patch_size": int, "tubelet_size": int, "resolution": int,
                    "frames_per_clip": int, "uniform_power": bool, "output": str}  # besides `checkpoint` (a path)
DIMENSIONS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "tubelet_size")  # the architecture's
