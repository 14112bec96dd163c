"""Decode a video once with PyAV, then cut every clip and spatial view from the decoded frames.

Axes: F decoded frames, K clips, S spatial views, T frames per clip, H/W pixels, C=3 channels (RGB, uint8).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from fer_cache.errors import ConfigError, DecodeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How clips are cut, resolved for one encoder: built only by from_config (the defaults live in
    config.ExtractionConfig)."""
    frames_per_clip: int
    frame_step: int
    clips_per_video: int | str  # or "all": every clip start at clip_stride (a dense store)
    spatial_views: int
    resize: int  # short side after decoding
    crop: int  # square crop fed to the encoder
    face_crop: bool  # crop one face box per clip (fer_cache.inputs.faces) instead of the centre
    face_margin: float  # the face box grows by this fraction of its side on each side
    mean: tuple[float, float, float]  # the encoder family's normalisation of frames in [0, 1]
    std: tuple[float, float, float]
    clip_stride: int = 1  # frames between clip starts of a dense store
    augment: object = None  # an augment.Policy: training copies of every clip (fer_cache.inputs.augment)

    @classmethod
    def from_config(cls, extraction, resolution: int, *, normalisation, where: str = "extraction") -> "Sampling":
        """The sampling of an extraction entry for an encoder of this input resolution (resize defaults to it) and
        normalisation (its `mean` and `std`); a resize below the crop (0 included) is refused, naming `where`."""
        resize = resolution if extraction.resize is None else extraction.resize
        if extraction.resize is None and extraction.resize_ratio:
            resize = int(resolution * extraction.resize_ratio)  # the reference's int(384 * 256 / 224) = 438
        if resize < resolution and not extraction.face_crop:
            raise ConfigError(f"{where}: extraction resize {resize} is smaller than the encoder's {resolution} px "
                              f"input; set resize to at least {resolution}")
        return cls(frames_per_clip=extraction.frames_per_clip, frame_step=extraction.frame_step,
                   clips_per_video=extraction.clips_per_video, spatial_views=extraction.spatial_views,
                   resize=resize, crop=resolution, face_crop=extraction.face_crop,
                   face_margin=extraction.face_margin, mean=tuple(normalisation.mean), std=tuple(normalisation.std),
                   clip_stride=extraction.clip_stride, augment=augment_policy(extraction.augment))

    def as_attrs(self) -> dict:
        attrs = {"frames_per_clip": self.frames_per_clip, "frame_step": self.frame_step,
                 "clips_per_video": self.clips_per_video, "spatial_views": self.spatial_views,
                 "resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}
        if self.face_crop:  # only then: stores without face crops keep their fingerprints
            from fer_cache.inputs.faces import DETECTOR
            attrs["face_crop"] = {"detector": DETECTOR, "margin": self.face_margin}
        if self.dense:
            attrs["clip_stride"] = self.clip_stride
        if self.augment is not None:
            attrs["augment"] = self.augment.describe()
        return attrs

    @property
    def dense(self) -> bool:
        return self.clips_per_video == "all"

    @property
    def copies(self) -> int:
        return self.augment.copies if self.augment is not None else 0

    def clip_count(self, n_frames: int) -> int:
        """Clips of a video of n_frames: every start at clip_stride on a dense store (one padded clip for a video
        shorter than a clip span), else clips_per_video."""
        if not self.dense:
            return self.clips_per_video
        span = (self.frames_per_clip - 1) * self.frame_step + 1
        return 1 + max(n_frames - span, 0) // self.clip_stride

    def normalise(self, clips_uint8):
        """uint8 [..., T, H, W, 3] -> float32 [..., 3, T, H, W], normalised as this sampling's encoder expects."""
        return normalise(clips_uint8, self.mean, self.std)

    @property
    def decode_side(self) -> tuple[int, bool]:
        """(short side to decode at, shrink only): face crops are cut from frames at up to twice the crop size."""
        return (2 * self.crop, True) if self.face_crop else (self.resize, False)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, aspect kept, even-free rounding."""
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


def frame_files(folder: Path) -> list[Path]:
    """The images of a frame folder in frame order: by the last integer in the name (1.jpg, 2.jpg, ..., 10.jpg;
    00001_00017.jpg), never lexicographically. Other files are ignored."""
    numbered = []
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        numbers = re.findall(r"\d+", path.stem)
        if not numbers:
            raise DecodeError(f"frame folder: image {path.name} has no frame number in its name")
        numbered.append((int(numbers[-1]), path))
    numbered.sort()
    for (a, first), (b, second) in zip(numbered, numbered[1:]):
        if a == b:
            raise DecodeError(f"frame folder: {first.name} and {second.name} have the same frame number {a}")
    return [path for _, path in numbered]


def read_images(folder: Path, convert) -> list:
    """Decode every image of a frame folder once, like the frames of a video; an unreadable image fails the video."""
    files = frame_files(folder)
    if not files:
        raise DecodeError(f"no image frames ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
    out = []
    for i, file in enumerate(files):
        try:
            with av.open(str(file)) as container:
                out.append(convert(next(container.decode(video=0))))
        except (av.FFmpegError, ValueError, OSError, StopIteration, IndexError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise DecodeError(f"frame {i + 1} of {len(files)} ({file.name}) cannot be decoded: {reason}") from exc
    return out


def read_frames(path: str | Path, convert) -> list:
    """Decode the first video stream once (or every image of a frame folder), applying `convert` to each
    av.VideoFrame; every way a file can be broken becomes a DecodeError with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        return read_images(path, convert)
    if not path.is_file():
        raise DecodeError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError("no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            declared = stream.frames  # 0 where the container does not say (CREMA-D FLV)
            for frame in container.decode(stream):
                out.append(convert(frame))
    except DecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError, MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not out:
            raise DecodeError(f"cannot decode: {reason[:200]}") from exc
        raise DecodeError(f"decoding stopped after {len(out)} frames: {reason[:200]}") from exc
    if not out:
        raise DecodeError("no video frames could be decoded")
    if declared > 0 and len(out) < declared - max(2, 0.05 * declared):  # metadata may be off by a frame or two
        raise DecodeError(f"truncated: decoded {len(out)} of the {declared} frames the container declares")
    return out


def decode_video(path: str | Path, short_side: int | None, shrink_only: bool = False) -> np.ndarray:
    """All frames of the first video stream (or of a frame folder), scaled during conversion -> [F, H, W, 3]
    uint8 (RGB). shrink_only: frames already at most short_side keep their size."""
    size = []

    def convert(frame) -> np.ndarray:
        if not size:
            keep = short_side is None or (shrink_only and min(frame.width, frame.height) <= short_side)
            size.append((frame.width, frame.height) if keep else scaled_size(frame.width, frame.height, short_side))
        width, height = size[0]
        return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")

    return np.stack(read_frames(path, convert))  # [F, H, W, 3]


def count_frames(path: str | Path) -> int:
    """Frames actually decoded (containers lie about their counts); no scaling, no conversion."""
    return len(read_frames(path, lambda frame: None))


def augment_policy(augment):
    """The augmentation policy of an extraction entry's augment (None: no copies); torchvision only then."""
    if augment is None:
        return None
    from fer_cache.inputs.augment import Policy
    return Policy(copies=augment.copies, seed=augment.seed)


def clip_frame_indices(n_frames: int, frames_per_clip: int, frame_step: int, *, clips_per_video: int | str,
                       clip_stride: int = 1) -> np.ndarray:
    """Decoded-frame indices of every clip -> [K, T]; clips spread evenly (or every start at clip_stride for
    clips_per_video "all"), short videos padded with the last frame."""
    span = (frames_per_clip - 1) * frame_step + 1
    if clips_per_video == "all":
        starts = np.arange(0, max(n_frames - span, 0) + 1, clip_stride, dtype=np.int64)  # [K_v]
    elif n_frames >= span:
        starts = np.round(np.linspace(0, n_frames - span, clips_per_video)).astype(np.int64)  # [K]
    else:
        starts = np.zeros(clips_per_video, dtype=np.int64)
    offsets = np.arange(frames_per_clip, dtype=np.int64) * frame_step  # [T]
    return np.minimum(starts[:, None] + offsets[None, :], n_frames - 1).astype(np.int32)  # [K, T]


def spatial_crops(height: int, width: int, crop: int, *, views: int) -> list[tuple[int, int]]:
    """Top-left corners of 1 centre crop or 3 crops along the long side."""
    top_centre, left_centre = (height - crop) // 2, (width - crop) // 2
    if views == 1:
        return [(top_centre, left_centre)]
    if width >= height:
        return [(top_centre, left) for left in (0, left_centre, width - crop)]
    return [(top, left_centre) for top in (0, top_centre, height - crop)]


def cut_clips(frames: np.ndarray, sampling: Sampling, detector=None) -> tuple[np.ndarray, np.ndarray]:
    """Decoded frames [F, H, W, 3] -> clips [K, S, T, crop, crop, 3] uint8 and their frame indices [K, T]; with
    face_crop, one face box per clip (detector: fer_cache.faces.load_detector())."""
    F, H, W, _ = frames.shape
    indices = clip_frame_indices(F, sampling.frames_per_clip, sampling.frame_step,
                                 clips_per_video=sampling.clips_per_video, clip_stride=sampling.clip_stride)
    if sampling.face_crop:
        from fer_cache.inputs.faces import crop_clips, face_boxes
        boxes = face_boxes(detector, frames, indices, margin=sampling.face_margin)
        return crop_clips(frames, indices, boxes, crop=sampling.crop), indices
    if min(H, W) < sampling.crop:
        raise DecodeError(f"frames of {W}x{H} are smaller than the {sampling.crop} px crop")
    picked = frames[indices]  # [K, T, H, W, 3]
    views = [picked[:, :, top:top + sampling.crop, left:left + sampling.crop]
             for top, left in spatial_crops(H, W, sampling.crop, views=sampling.spatial_views)]
    return np.stack(views, axis=1), indices  # [K, S, T, crop, crop, 3], [K, T]


def normalise(clips_uint8, mean: tuple[float, ...], std: tuple[float, ...]):
    """uint8 [..., T, H, W, 3] (numpy or torch) -> float32 torch [..., 3, T, H, W] with the encoder's statistics."""
    import torch

    x = torch.as_tensor(clips_uint8)
    x = x.float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device)
    x = (x - mean_t) / std_t  # [..., T, H, W, 3]
    return x.movedim(-1, -4).contiguous()  # [..., 3, T, H, W]
