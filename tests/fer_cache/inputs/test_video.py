import numpy as np
import pytest

from fer_cache.config import ExtractionConfig
from fer_cache.encoders.weights import IMAGENET, UNIT
from fer_cache.errors import DecodeError
from fer_cache.inputs.datasets.synthetic import write_video
from fer_cache.inputs.video import (
    Sampling,
    clip_frame_indices,
    count_frames,
    cut_clips,
    decode_video,
    normalise,
    spatial_crops,
)
from tests.helpers import CREMA_D

# One VP6 frame per demuxed video packet, counted without decoding; the FLV container itself reports 0 frames.
CREMA_D_FRAMES = {"ANG": 67, "DIS": 70, "FEA": 65, "HAP": 56, "NEU": 61, "SAD": 60}


def test_clip_indices_spread_evenly():
    idx = clip_frame_indices(100, frames_per_clip=16, frame_step=4, clips_per_video=8)
    assert idx.shape == (8, 16)
    assert idx[0, 0] == 0 and idx[-1, -1] == 99  # first clip starts at 0, last ends on the last frame
    assert (np.diff(idx, axis=1) == 4).all()
    assert (np.diff(idx[:, 0]) > 0).all()


def test_clip_exactly_one_span_shorter_and_one_frame():
    span = (16 - 1) * 4 + 1
    exact = clip_frame_indices(span, 16, 4, clips_per_video=8)
    assert (exact == np.arange(0, span, 4)).all()  # every clip is the one possible clip
    short = clip_frame_indices(30, 16, 4, clips_per_video=2)
    assert short[0, -1] == 29 and (short[0, 8:] == 29).all()  # padded with the last frame
    one = clip_frame_indices(1, 16, 4, clips_per_video=3)
    assert (one == 0).all()


def test_spatial_views_along_the_long_side():
    assert spatial_crops(64, 100, 64, views=3) == [(0, 0), (0, 18), (0, 36)]
    assert spatial_crops(100, 64, 64, views=3) == [(0, 0), (18, 0), (36, 0)]
    assert spatial_crops(64, 100, 64, views=1) == [(0, 18)]


@pytest.mark.parametrize("emotion,frames", sorted(CREMA_D_FRAMES.items()))
def test_real_crema_d_clips_decode_with_exact_counts(emotion, frames):
    path = CREMA_D / f"1001_DFA_{emotion}_XX.flv"
    assert count_frames(path) == frames
    decoded = decode_video(path, short_side=48)
    assert decoded.shape == (frames, 48, 64, 3) and decoded.dtype == np.uint8  # 480x360 scaled during decoding
    clips, idx = cut_clips(decoded, Sampling.from_config(
        ExtractionConfig(frames_per_clip=16, frame_step=4, clips_per_video=8, spatial_views=3), 48,
        normalisation=IMAGENET))
    assert clips.shape == (8, 3, 16, 48, 48, 3)
    assert idx.max() == frames - 1


def test_generated_video_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((40, 70, 3), i * 20, dtype=np.uint8) + rng.integers(0, 5, (40, 70, 3), dtype=np.uint8)
              for i in range(7)]
    path = tmp_path / "seven.mp4"
    write_video(path, [np.ascontiguousarray(f[:, :70 - 70 % 2]) for f in frames])
    decoded = decode_video(path, short_side=20)
    assert decoded.shape[0] == 7 == count_frames(path)
    assert decoded.shape[1] == 20
    brightness = decoded.reshape(7, -1).mean(axis=1)
    assert (np.diff(brightness) > 10).all()  # frames come back in order
    clips, idx = cut_clips(decoded, Sampling.from_config(
        ExtractionConfig(frames_per_clip=4, frame_step=2, clips_per_video=2), 20, normalisation=IMAGENET))
    assert (idx == [[0, 2, 4, 6], [0, 2, 4, 6]]).all()


def test_broken_inputs_raise_decode_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    for name in ("empty.mp4", "noise.mp4", "text.mp4"):
        with pytest.raises(DecodeError):
            decode_video(tmp_path / name, 32)


def test_normalise_uses_the_encoders_statistics():
    clip = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    clip[..., 0] = 255
    x = normalise(clip, IMAGENET.mean, IMAGENET.std)
    assert tuple(x.shape) == (3, 2, 4, 4)
    assert np.isclose(float(x[0, 0, 0, 0]), (1 - IMAGENET.mean[0]) / IMAGENET.std[0], atol=1e-6)
    assert np.isclose(float(x[1, 0, 0, 0]), -IMAGENET.mean[1] / IMAGENET.std[1], atol=1e-6)
    unit = normalise(clip, UNIT.mean, UNIT.std)  # MARLIN: frames in [0, 1]
    assert float(unit[0, 0, 0, 0]) == 1.0 and float(unit[1, 0, 0, 0]) == 0.0
