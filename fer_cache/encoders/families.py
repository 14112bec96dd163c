"""The encoder families as one table: what a checkpoint of each looks like and which ViT switches it sets.

A new family is one `Family` entry here plus its reader (a function that turns its checkpoint into our key names).
This module imports no torch at module level, so config parsing can check family names cheaply.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from fer_cache.encoders.presets import PRESETS as VJEPA_PRESETS
from fer_cache.encoders.presets import VIDEOMAE_PRESETS, VJEPA21_PRESETS, ArchPreset


@dataclass(kw_only=True, frozen=True)
class EncoderConfig:
    """One encoder entry of data.yaml (the keywords of `build_encoder`); None means: from the checkpoint or preset."""
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
    output: str = "last"  # V-JEPA 2.1: `hierarchical` stores four normed layer outputs side by side (4 x width)
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

Layout = Literal["file", "directory"]  # a training checkpoint file, or a Hugging Face directory


@dataclass(frozen=True, kw_only=True)
class Family:
    name: str  # what data.yaml's `family:` says
    title: str  # what people call it
    objective: Literal["latent prediction", "pixel reconstruction"]  # how it was pretrained (the paper's contrast)
    layout: Layout
    reader: str  # the function in readers.py that returns (config.json or None, state dict in our key names)
    architecture: dict  # ViTConfig switches fixed by the family (positions, norms, modality embedding)
    presets: dict[str, ArchPreset]
    default_key: str | None = None  # the checkpoint entry that holds the frozen encoder (training checkpoints)
    outputs: tuple[str, ...] = ("last",)
    head_dim: int | None = None  # heads = width / head_dim when no preset of that width and depth says otherwise
    evidence: str = ""  # what its checkpoints hold that others do not, for refusing a mis-declared one
    model_types: tuple[str, ...] = ()  # config.json model_type of a Hugging Face directory
    uses_uniform_power: bool = False


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(name="vjepa", title="V-JEPA 1", objective="latent prediction", layout="file", reader="training_checkpoint",
           architecture={"positions": "sincos3d"}, presets=VJEPA_PRESETS, default_key="target_encoder",
           evidence="unexpected key 'pos_embed' (a fixed position table, as V-JEPA 1 checkpoints store)",
           uses_uniform_power=True),
    Family(name="vjepa2", title="V-JEPA 2", objective="latent prediction", layout="file", reader="training_checkpoint",
           architecture={"positions": "rope"}, presets=VJEPA_PRESETS, default_key="target_encoder",
           evidence="no 'pos_embed' in the weights and no 'norms_block', as in V-JEPA 2 checkpoints (rotary "
                    "positions)"),
    Family(name="vjepa2-hf", title="V-JEPA 2 (Hugging Face)", objective="latent prediction", layout="directory",
           reader="hf_vjepa2", architecture={"positions": "rope"}, presets=VJEPA_PRESETS, model_types=("vjepa2",),
           evidence="a Hugging Face V-JEPA 2 directory (model_type vjepa2)"),
    Family(name="vjepa2.1", title="V-JEPA 2.1", objective="latent prediction", layout="file",
           reader="vjepa21_checkpoint", architecture={"positions": "rope", "modality_embed": True,
                                                      "final_norm": "per_layer", "rope_grid": "pretraining",
                                                      "rope_interleaved": True},
           presets=VJEPA21_PRESETS, default_key="target_encoder", outputs=("last", "hierarchical"), head_dim=64,
           evidence="has 'norms_block' LayerNorms and a 'video_mod_embed', as V-JEPA 2.1 checkpoints do"),
    Family(name="videomae", title="VideoMAE", objective="pixel reconstruction", layout="directory",
           reader="hf_videomae", architecture={"positions": "sincos1d"}, presets=VIDEOMAE_PRESETS,
           model_types=("videomae",), evidence="a Hugging Face VideoMAE directory (model_type videomae)"),
)}


def family_of_state(state: dict) -> str:
    """Which training-checkpoint family a state dict (our key names) belongs to, by the keys only it has."""
    if "video_mod_embed" in state or any(k.startswith("norms_block.") for k in state):
        return "vjepa2.1"
    return "vjepa" if "pos_embed" in state else "vjepa2"


def family_of_model_type(model_type: str | None) -> str | None:
    for f in FAMILIES.values():
        if model_type in f.model_types:
            return f.name
    return None


def pretraining_grid(patch_size: int, resolution: int) -> int:
    """V-JEPA 2.1 pretrained at 256 px (252 px with patch 14); its rotary positions are rescaled to that grid."""
    return {16: 16, 14: 18}.get(patch_size, resolution // patch_size)
