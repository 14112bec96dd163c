"""The paper's training augmentation of a clip: seeded per (video, clip, copy), one RandAugment draw and one crop
box for every frame of a clip, erasing decided frame by frame (issue 32)."""

import numpy as np
import pytest
import torch

pytest.importorskip("kornia")

from fer_cache.inputs.augment import OPS, Draw, Policy, erase_frames, generator, rand_augment, resized_crop

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def clip(seed: int = 0, frames: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 40, 56, 3), dtype=np.uint8)


def test_copies_are_deterministic_per_seed_and_differ_from_each_other_and_the_clean_view():
    frames = clip()
    policy = Policy(copies=3, seed=0)
    copies = policy.copies_of(frames, "Actor_01/a.mp4", clip=0, crop=32, mean=MEAN, std=STD)  # [A, T, 32, 32, 3]
    assert copies.shape == (3, 8, 32, 32, 3) and copies.dtype == np.uint8
    again = Policy(copies=3, seed=0).copies_of(frames, "Actor_01/a.mp4", clip=0, crop=32, mean=MEAN, std=STD)
    np.testing.assert_array_equal(copies, again)  # a resumed or multi-GPU extraction writes the same copies
    other_seed = Policy(copies=3, seed=1).copies_of(frames, "Actor_01/a.mp4", clip=0, crop=32, mean=MEAN, std=STD)
    other_clip = policy.copies_of(frames, "Actor_01/a.mp4", clip=1, crop=32, mean=MEAN, std=STD)
    for different in (other_seed, other_clip, copies[1:2], copies[2:3]):
        assert (different[0] != copies[0]).mean() > 0.3
    clean = frames[:, 4:36, 12:44]  # the centre crop of the clean view
    assert all((copy != clean).mean() > 0.3 for copy in copies)


def test_one_rand_augment_draw_and_one_crop_box_serve_every_frame_of_a_clip():
    """Identical frames stay identical through RandAugment and the resized crop (one draw per clip), for many
    draws; two different frames in one clip get the same geometry (the same box: a shifted pattern stays shifted)."""
    still = torch.rand(1, 3, 40, 56).expand(6, 3, 40, 56).clone()  # [T, 3, H, W], six equal frames
    fill = torch.tensor(MEAN).view(1, 3, 1, 1)
    for seed in range(20):
        g = generator(seed, "v", clip=0, copy=0)
        out = resized_crop(rand_augment(still.clone(), g, fill=fill, translate=14.4), g, 32)
        assert out.shape == (6, 3, 32, 32)
        assert torch.equal(out, out[:1].expand_as(out))


def test_every_op_keeps_the_clip_in_range_at_every_level():
    x = torch.rand(4, 3, 24, 32)
    fill = torch.tensor(MEAN).view(1, 3, 1, 1)
    for op in OPS:
        for level in (0.0, 0.7, 1.0):
            for sign in (1.0, -1.0):
                out = op(x.clone(), Draw(level, sign, fill, 10.0)).clamp(0, 1)
                assert out.shape == x.shape and torch.isfinite(out).all()


def test_erasing_decides_and_draws_its_box_frame_by_frame():
    """The reference's RandomErasing loops over a clip's frames: about a quarter of them erased, each its own box."""
    x = torch.full((400, 3, 32, 32), 0.5)
    out = erase_frames(x, generator(0, "v", clip=0, copy=0), mean=torch.tensor(MEAN).view(1, 3, 1, 1),
                       std=torch.tensor(STD).view(1, 3, 1, 1))
    erased = (out != 0.5).any(dim=1)  # [T, H, W]
    fraction = erased.any(dim=(1, 2)).float().mean()
    assert 0.18 < fraction < 0.32
    boxes = {tuple(erased[t].nonzero().min(0).values.tolist() + erased[t].nonzero().max(0).values.tolist())
             for t in range(len(out)) if erased[t].any()}
    assert len(boxes) > 0.9 * int(erased.any(dim=(1, 2)).sum())  # boxes differ from frame to frame
