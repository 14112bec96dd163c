"""The reference's training augmentation of one clip (the paper's fork of V-JEPA 1's `make_transforms`): RandAugment
rand-m7-n4-mstd0.5-inc1 with one draw of ops and magnitudes for all frames, a random resized crop of scale
(0.08, 1.0) and aspect (3/4, 4/3) with one box for all frames, then random erasing with probability 0.25 that draws
for each frame on its own, as the reference's RandomErasing loops over the frames. The image operations are
kornia's (fer-jepa[augment]); every draw comes from one generator seeded per (seed, video, clip, copy), so a resumed
or multi-GPU extraction writes the same copies. Differences from the reference are listed in the README.

Axes: T frames, H/W pixels, C=3 channels.
"""

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fer_cache.errors import ConfigError

NUM_OPS, MAGNITUDE, MAGNITUDE_STD, OP_PROBABILITY = 4, 7.0, 0.5, 0.5  # rand-m7-n4-mstd0.5, timm's prob per op
CROP_SCALE, CROP_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
ERASE_PROBABILITY, ERASE_AREA, ERASE_ASPECT = 0.25, (0.02, 1 / 3), 0.3  # timm's RandomErasing, pixel mode


def kornia_modules():
    try:
        import kornia.enhance
        import kornia.geometry.transform
    except ImportError as exc:
        raise ConfigError("augmented copies need kornia: pip install 'fer-jepa[augment]'") from exc
    return kornia.enhance, kornia.geometry.transform


@dataclass(frozen=True, kw_only=True)
class Policy:
    """The paper's policy, `copies` draws per clip from `seed`."""
    copies: int
    seed: int = 0

    def describe(self) -> dict:
        """The policy's parameters, recorded in the store's sampling attributes (and so in its fingerprint)."""
        return {"policy": "paper", "copies": self.copies, "seed": self.seed,
                "rand_augment": {"ops": NUM_OPS, "magnitude": MAGNITUDE, "magnitude_std": MAGNITUDE_STD,
                                 "op_probability": OP_PROBABILITY, "increasing": True, "library": "kornia"},
                "resized_crop": {"scale": list(CROP_SCALE), "ratio": list(CROP_RATIO), "interpolation": "bilinear"},
                "erasing": {"probability": ERASE_PROBABILITY, "area": list(ERASE_AREA), "aspect": ERASE_ASPECT,
                            "mode": "pixel", "per_frame": True}, "hflip": False}

    def copies_of(self, frames: np.ndarray, video_id: str, *, clip: int, crop: int, mean, std) -> np.ndarray:
        """One clip's decoded frames uint8 [T, H, W, 3] -> its `copies` augmented views [A, T, crop, crop, 3]."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)  # [T, 3, H, W]
        out = [augment_clip(x, generator(self.seed, video_id, clip=clip, copy=a), crop=crop, mean=mean, std=std)
               for a in range(self.copies)]
        return torch.stack(out).mul_(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()


def generator(seed: int, video_id: str, *, clip: int, copy: int) -> torch.Generator:
    """The draws of one copy: a function of the seed, the video's id, the clip and the copy only."""
    digest = hashlib.sha256(f"{seed}/{video_id}/{clip}/{copy}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def augment_clip(x: torch.Tensor, g: torch.Generator, *, crop: int, mean, std) -> torch.Tensor:
    """frames [T, 3, H, W] in [0, 1] -> [T, 3, crop, crop]: RandAugment, a resized crop, per-frame erasing."""
    fill = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    x = rand_augment(x, g, fill=fill, translate=0.45 * crop)
    x = resized_crop(x, g, crop)
    return erase_frames(x, g, mean=fill, std=torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1))


@dataclass(frozen=True)
class Draw:
    """One op's draw: its level in [0, 1] (magnitude / 10), sign, the fill colour of warps, translation at level 1."""
    level: float
    sign: float
    fill: torch.Tensor  # [1, 3, 1, 1]
    translate: float  # pixels


def rand_augment(x: torch.Tensor, g: torch.Generator, *, fill: torch.Tensor, translate: float) -> torch.Tensor:
    """timm's rand-m7-n4-mstd0.5-inc1: 4 ops drawn with replacement, each applied with probability 0.5 at a
    magnitude drawn around 7 (of 10); one draw for every frame of the clip."""
    for index in torch.randint(len(OPS), (NUM_OPS,), generator=g).tolist():
        if uniform(g) >= OP_PROBABILITY:
            continue
        level = min(max(MAGNITUDE + MAGNITUDE_STD * float(torch.randn((), generator=g)), 0.0), 10.0) / 10
        sign = 1.0 if uniform(g) < 0.5 else -1.0
        x = OPS[index](x, Draw(level, sign, fill, translate)).clamp_(0, 1)
    return x


def gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # [T, 1, H, W], PIL's L


def geometric(x: torch.Tensor, fill: torch.Tensor, warp) -> torch.Tensor:
    """A warp whose uncovered pixels take the fill colour (kornia fills zeros)."""
    return warp(x - fill) + fill


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    return torch.where(high > low, (x - low) / (high - low).clamp_min(1e-8), x)


def _rotate(x, d: Draw):
    _, geometry = kornia_modules()
    return geometric(x, d.fill, lambda v: geometry.rotate(v, torch.full((len(v),), 30.0 * d.level * d.sign)))


def _shear(axis: int):
    def op(x, d: Draw):
        _, geometry = kornia_modules()
        amount = torch.zeros(len(x), 2)
        amount[:, axis] = 0.3 * d.level * d.sign
        return geometric(x, d.fill, lambda v: geometry.shear(v, amount))
    return op


def _translate(axis: int):
    def op(x, d: Draw):
        _, geometry = kornia_modules()
        amount = torch.zeros(len(x), 2)
        amount[:, axis] = d.translate * d.level * d.sign
        return geometric(x, d.fill, lambda v: geometry.translate(v, amount))
    return op


def _enhance(name: str):
    def op(x, d: Draw):
        enhance, _ = kornia_modules()
        return getattr(enhance, name)(x)
    return op


def _blend(degenerate):
    """PIL's ImageEnhance (increasing): x blended with its degenerate image by 1 +- 0.9 x level."""
    def op(x, d: Draw):
        factor = 1.0 + 0.9 * d.level * d.sign
        return degenerate(x) + factor * (x - degenerate(x))
    return op


def _sharpness(x, d: Draw):
    enhance, _ = kornia_modules()
    factor = 1.0 + 0.9 * d.level * d.sign
    return enhance.sharpness(x, factor) if factor >= 0 else x


def _posterize(x, d: Draw):
    enhance, _ = kornia_modules()
    return enhance.posterize(x, 4 - int(d.level * 4))  # increasing: fewer bits at higher levels


def _solarize(x, d: Draw):
    threshold = (256 - int(d.level * 256)) / 256  # increasing: a lower threshold at higher levels
    return torch.where(x >= threshold, 1.0 - x, x)


def _solarize_add(x, d: Draw):
    return torch.where(x < 128 / 255, (x + int(d.level * 110) / 255).clamp(max=1.0), x)


OPS = [_enhance("equalize"), lambda x, *_: autocontrast(x), lambda x, *_: 1.0 - x, _rotate, _posterize, _solarize,
       _solarize_add, _blend(gray), _blend(lambda x: gray(x).mean(dim=(-2, -1), keepdim=True)),
       _blend(lambda x: torch.zeros_like(x)), _sharpness, _shear(0), _shear(1), _translate(0), _translate(1)]
# equalize, auto-contrast, invert, rotate, posterize, solarize, solarize-add, colour (against grey), contrast
# (against the mean grey), brightness (against black), sharpness, shear x/y, translate x/y: timm's increasing set


def resized_crop(x: torch.Tensor, g: torch.Generator, size: int) -> torch.Tensor:
    """One random box of scale (0.08, 1) and aspect (3/4, 4/3) for every frame, resized bilinearly to size x size
    (torchvision's RandomResizedCrop draw, as the reference's video transforms)."""
    _, _, H, W = x.shape
    area = H * W
    box = None
    for _ in range(10):
        target = area * uniform(g, *CROP_SCALE)
        ratio = math.exp(uniform(g, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= W and 0 < h <= H:
            top = int(torch.randint(H - h + 1, (), generator=g))
            left = int(torch.randint(W - w + 1, (), generator=g))
            box = (top, left, h, w)
            break
    if box is None:  # the central crop within the ratios
        ratio = W / H
        w, h = (W, round(W / CROP_RATIO[0])) if ratio < CROP_RATIO[0] else \
            (round(H * CROP_RATIO[1]), H) if ratio > CROP_RATIO[1] else (W, H)
        w, h = min(w, W), min(h, H)
        box = ((H - h) // 2, (W - w) // 2, h, w)
    top, left, h, w = box
    return F.interpolate(x[:, :, top:top + h, left:left + w], size=(size, size), mode="bilinear",
                         align_corners=False)  # [T, 3, size, size]


def erase_frames(x: torch.Tensor, g: torch.Generator, *, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """timm's RandomErasing in pixel mode, one decision and box per frame: per-pixel normal values of the encoder's
    normalised space, mapped back to [0, 1] (and clipped there: the copies travel as uint8)."""
    T, C, H, W = x.shape
    for t in range(T):
        if uniform(g) >= ERASE_PROBABILITY:
            continue
        for _ in range(10):
            target = H * W * uniform(g, *ERASE_AREA)
            aspect = math.exp(uniform(g, math.log(ERASE_ASPECT), math.log(1 / ERASE_ASPECT)))
            h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if w < W and h < H:
                top = int(torch.randint(H - h + 1, (), generator=g))
                left = int(torch.randint(W - w + 1, (), generator=g))
                noise = torch.randn((C, h, w), generator=g)
                x[t, :, top:top + h, left:left + w] = (mean[0] + std[0] * noise).clamp(0, 1)
                break
    return x
