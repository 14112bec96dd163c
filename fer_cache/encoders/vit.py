"""A compact video ViT that covers V-JEPA 1 (fixed 3-D sin-cos position table), V-JEPA 2 (3-D RoPE), V-JEPA 2.1
(interpolated 3-D RoPE, a video modality embedding, one LayerNorm per hierarchical layer), VideoMAE and MARLIN (a fixed
1-D sin-cos table over the tokens, query/value biases only). Which family sets which switch: `families.py`.

Axes: B clips, C=3 channels, T frames, H/W pixels, N tokens (T' x H' x W', row-major), D width, h heads.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Positions = Literal["sincos3d", "rope", "sincos1d"]  # V-JEPA 1 table, V-JEPA 2/2.1 rotary, VideoMAE table
FinalNorm = Literal["norm", "per_layer", "none"]  # one final LayerNorm, V-JEPA 2.1's norms_block, none (mean pooling)
Output = Literal["last", "hierarchical"]
HIERARCHICAL_LAYERS = {12: (2, 5, 8, 11), 24: (5, 11, 17, 23), 40: (9, 19, 29, 39), 48: (11, 23, 37, 47)}


@dataclass(kw_only=True, frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    resolution: int = 224
    frames_per_clip: int = 16
    positions: Positions = "sincos3d"
    rope_grid: int | None = None  # V-JEPA 2.1: rotary height/width positions rescaled to this pretraining grid
    rope_interleaved: bool = False  # V-JEPA 2.1 pairs sin/cos with neighbouring channels; V-JEPA 2 repeats halves
    uniform_power: bool | None = True  # V-JEPA 1 sin-cos split of the width across t/h/w (None otherwise)
    qkv_bias: bool = True
    layernorm_eps: float = 1e-6
    modality_embed: bool = False  # V-JEPA 2.1: a learned video embedding added after the patch embedding
    final_norm: FinalNorm = "norm"
    output: Output = "last"

    @property
    def use_rope(self) -> bool:
        return self.positions == "rope"

    @property
    def hierarchical_layers(self) -> tuple[int, ...]:
        """The four blocks whose normed outputs V-JEPA 2.1 exposes (its table; evenly spaced for other depths)."""
        if self.depth in HIERARCHICAL_LAYERS:
            return HIERARCHICAL_LAYERS[self.depth]
        step = self.depth // 4
        return tuple(step * (i + 1) - 1 for i in range(4))

    @property
    def token_width(self) -> int:
        return self.embed_dim * (4 if self.output == "hierarchical" else 1)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        return (self.frames_per_clip // self.tubelet_size, self.resolution // self.patch_size,
                self.resolution // self.patch_size)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.token_grid
        return t * h * w


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[M] positions -> [M, dim] as (sin | cos), float64 like the reference."""
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    angles = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)  # [M, dim/2]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # [M, dim]


def sincos_3d(dim: int, grid: tuple[int, int, int], uniform_power: bool) -> torch.Tensor:
    """The V-JEPA 1 fixed position table for a (T', H', W') grid -> [1, N, dim]."""
    t, h, w = grid
    grid_t, grid_h, grid_w = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")  # [T', H', W']
    if uniform_power:
        dim_t = dim_h = dim_w = int(np.ceil(dim / 6) * 2)
    else:
        dim_t, dim_h, dim_w = dim // 2, dim // 4, dim // 4
    table = np.concatenate([sincos_1d(dim_t, grid_t), sincos_1d(dim_h, grid_h), sincos_1d(dim_w, grid_w)], axis=1)
    return torch.tensor(table[:, :dim], dtype=torch.float32).unsqueeze(0)  # [1, N, D] (follows the default device)


def sincos_tokens(dim: int, num_tokens: int) -> torch.Tensor:
    """VideoMAE's fixed table: one sin-cos code per token index, sin on even and cos on odd channels -> [1, N, dim]."""
    exponents = 2 * (np.arange(dim) // 2) / dim  # [dim]
    angles = np.arange(num_tokens, dtype=np.float64)[:, None] / np.power(10000, exponents)[None, :]  # [N, dim]
    angles[:, 0::2], angles[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    return torch.tensor(angles, dtype=torch.float32).unsqueeze(0)


def rotate(x: torch.Tensor, pos: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """Rotary embedding of one axis: x [B, h, N, d], pos [N]. V-JEPA 2 has a layout quirk (sin/cos repeated as two
    halves while the rotation pairs neighbouring channels); V-JEPA 2.1 repeats each angle for its channel pair."""
    d = x.shape[-1]
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=x.dtype, device=x.device) / (d / 2.0))  # [d/2]
    freq = pos[:, None].to(x.dtype) * omega[None, :]  # [N, d/2]
    if interleaved:
        sin, cos = freq.sin().repeat_interleave(2, dim=-1), freq.cos().repeat_interleave(2, dim=-1)  # [N, d]
    else:
        sin, cos = freq.sin().repeat(1, 2), freq.cos().repeat(1, 2)  # [N, d]
    pairs = x.unflatten(-1, (-1, 2))  # [B, h, N, d/2, 2]
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # [B, h, N, d]
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.use_rope = cfg.use_rope
        self.rope_grid = cfg.rope_grid
        self.rope_interleaved = cfg.rope_interleaved
        self.rope_dim = 2 * ((self.head_dim // 3) // 2)  # channels per axis (t, h, w)

    def apply_rope(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        _, h, w = grid
        ids = torch.arange(x.shape[2], device=x.device)  # [N]
        positions = [ids // (h * w), (ids % (h * w)) // w, ids % w]  # time, height, width
        if self.rope_grid is not None:  # V-JEPA 2.1: height and width rescaled to the pretraining grid
            for axis, size in ((1, h), (2, w)):
                if size > 1:
                    positions[axis] = positions[axis] * 1.0 * (self.rope_grid - 1) / (size - 1)
        parts, start = [], 0
        for pos in positions:
            parts.append(rotate(x[..., start:start + self.rope_dim], pos, self.rope_interleaved))
            start += self.rope_dim
        parts.append(x[..., start:])  # channels left unrotated when head_dim is not a multiple of 6
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [3, B, h, N, d]
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.use_rope:
            q, k = self.apply_rope(q, grid), self.apply_rope(k, grid)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, h, N, d]
        return self.proj(y.transpose(1, 2).reshape(B, N, D))  # [B, N, D]


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layernorm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layernorm_eps)
        self.mlp = MLP(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class PatchEmbed3D(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)  # [B, 3, T, H, W] -> [B, N, D]


@dataclass(kw_only=True, frozen=True)
class EncoderIdentity:
    """Where an encoder's weights came from, and what was decided while building it (written into stores)."""
    family: str
    arch: str | None = None
    checkpoint: str | None = None  # file or folder name
    checkpoint_sha256: str | None = None
    checkpoint_key: str | None = None
    notes: tuple[str, ...] = ()  # e.g. heads that differ from the preset of that width
    fine_tuned: str | None = None  # a label-supervised checkpoint (a fine-tuned VideoMAE), said in stores and reports


class VideoViT(nn.Module):
    """Frozen video encoder: video [B, 3, T, H, W] (normalised) -> tokens [B, N, D] after the final norm
    ([B, N, 4D] for V-JEPA 2.1's hierarchical output)."""

    def __init__(self, cfg: ViTConfig, identity: EncoderIdentity | None = None):
        super().__init__()
        self.cfg = cfg
        self.identity = identity or EncoderIdentity(family="vjepa2" if cfg.use_rope else "vjepa")
        if cfg.final_norm == "per_layer" and cfg.depth < 4:
            raise ValueError(f"a V-JEPA 2.1 encoder needs at least 4 blocks (4 hierarchical layers), got {cfg.depth}")
        self.patch_embed = PatchEmbed3D(cfg)
        if cfg.positions == "rope":
            self.pos_embed = None
        else:
            self.register_buffer("pos_embed", self.position_table(cfg.token_grid))
        self.video_mod_embed = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.modality_embed else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layernorm_eps) if cfg.final_norm == "norm" else None
        self.norms_block = None
        if cfg.final_norm == "per_layer":
            self.norms_block = nn.ModuleList(nn.LayerNorm(cfg.embed_dim, eps=cfg.layernorm_eps) for _ in range(4))

    def position_table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        if self.cfg.positions == "sincos1d":
            return sincos_tokens(self.cfg.embed_dim, grid[0] * grid[1] * grid[2])
        return sincos_3d(self.cfg.embed_dim, grid, self.cfg.uniform_power)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = video.shape
        grid = (T // self.cfg.tubelet_size, H // self.cfg.patch_size, W // self.cfg.patch_size)
        x = self.patch_embed(video)  # [B, N, D]
        if self.pos_embed is not None:
            pos = self.pos_embed if grid == self.cfg.token_grid else self.position_table(grid).to(x)
            x = x + pos.to(x.dtype)
        if self.video_mod_embed is not None:
            x = x + self.video_mod_embed.to(x.dtype)
        if self.norms_block is None:
            for block in self.blocks:
                x = block(x, grid)
            return x if self.norm is None else self.norm(x)  # [B, N, D]
        layers, outputs = self.cfg.hierarchical_layers, []
        for i, block in enumerate(self.blocks):
            x = block(x, grid)
            if i in layers and (self.cfg.output == "hierarchical" or i == layers[-1]):
                outputs.append(self.norms_block[layers.index(i)](x))
        return torch.cat(outputs, dim=-1)  # [B, N, D] (last) or [B, N, 4D] (hierarchical)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_features(video)

    def flops_per_clip(self) -> float:
        """Multiply-adds x 2 of one clip's forward pass (matmuls and attention), for TFLOP/s reporting."""
        cfg, N, D = self.cfg, self.cfg.num_tokens, self.cfg.embed_dim
        hidden = int(D * cfg.mlp_ratio)
        patch = N * D * 3 * cfg.tubelet_size * cfg.patch_size**2
        per_block = N * D * 3 * D + N * D * D + 2 * N * D * hidden + 2 * N * N * D
        return 2.0 * (patch + cfg.depth * per_block)
