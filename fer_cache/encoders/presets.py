"""Official architecture presets (width, depth, heads, MLP ratio) of each family's releases."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchPreset:  # a row of the preset tables below: (width, depth, heads, MLP ratio)
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
VJEPA21_PRESETS: dict[str, ArchPreset] = {  # V-JEPA 2.1: every ViT has 64-channel heads
    "vit_base": ArchPreset(768, 12, 12, 4.0),
    "vit_large": ArchPreset(1024, 24, 16, 4.0),
    "vit_giant_xformers": ArchPreset(1408, 40, 22, 48 / 11),
    "vit_gigantic_xformers": ArchPreset(1664, 48, 26, 64 / 13),
}
VIDEOMAE_PRESETS: dict[str, ArchPreset] = {  # MCG-NJU/videomae-base, -large, -huge
    "vit_base": ArchPreset(768, 12, 12, 4.0),
    "vit_large": ArchPreset(1024, 24, 16, 4.0),
    "vit_huge": ArchPreset(1280, 32, 16, 4.0),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)
