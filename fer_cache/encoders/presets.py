"""Official V-JEPA architecture presets (width, depth, heads, MLP ratio)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchPreset:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float


PRESETS: dict[str, ArchPreset] = {
    "vit_tiny": ArchPreset(192, 12, 3, 4.0),
    "vit_small": ArchPreset(384, 12, 6, 4.0),
    "vit_base": ArchPreset(768, 12, 12, 4.0),
    "vit_large": ArchPreset(1024, 24, 16, 4.0),
    "vit_huge": ArchPreset(1280, 32, 16, 4.0),
    "vit_giant": ArchPreset(1408, 40, 16, 48 / 11),
    "vit_gigantic": ArchPreset(1664, 48, 16, 64 / 13),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)
