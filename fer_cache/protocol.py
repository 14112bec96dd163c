"""The paper's protocol at extraction (data.yaml `extraction`): augmented training copies, the presets, and the test
sampling that goes with a training extraction. Plain values only: the augmentation itself is inputs.augment's."""

from dataclasses import dataclass, replace

from fer_cache.errors import ConfigError


@dataclass(kw_only=True, frozen=True)
class AugmentConfig:
    """Augmented training copies written beside every clip's clean tokens (fer_cache.inputs.augment)."""
    policy: str = "paper"
    copies: int = 4
    seed: int = 0


PRESETS = ("paper",)
EVAL_RATIO = 256 / 224  # the reference's evaluation: short side int(384 * 256 / 224) = 438, centre crop 384


def preset_extraction(name: str, entry: dict, *, where: str) -> dict:
    """The values a preset sets (the entry's own keys still win): the paper's training sampling, 16 frames at step
    4, 8 segments, 4 augmented copies of each. An unknown name is refused naming `where`."""
    if name not in PRESETS:
        raise ConfigError(f"{where}: 'preset' must be one of {', '.join(PRESETS)}, got {name!r}")
    return {"frames_per_clip": 16, "frame_step": 4, "clips_per_video": 8, "spatial_views": 1,
            "augment": AugmentConfig(policy="paper", copies=4, seed=0)} | entry


def test_extraction(cfg):
    """The test sampling that goes with a training extraction: every clip start at stride 1, short side at 256/224
    of the crop (the reference's evaluation), no copies."""
    return replace(cfg, clips_per_video="all", clip_stride=1, augment=None, resize=None, resize_ratio=EVAL_RATIO,
                   face_crop=False)


def check_augment(cfg, where: str) -> None:
    augment = cfg.augment
    if augment.policy != "paper":
        raise ConfigError(f"{where}: augment 'policy' must be paper (the reference's training augmentation), got "
                          f"{augment.policy!r}")
    if augment.copies < 1:
        raise ConfigError(f"{where}: augment 'copies' must be at least 1, got {augment.copies}")
    if cfg.dense or cfg.face_crop:
        raise ConfigError(f"{where}: augmented copies are training clips: use them with a fixed clips_per_video and "
                          "without face_crop (test on a dense store of clean clips)")
