"""The decode workers' side of extraction: each video decoded once, all its clips and views cut from the same frames,
handed to the main process in shared memory.

Axes: K clips per video, S views, T frames, h/w crop pixels.
"""

import signal
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fer_cache.errors import DecodeError
from fer_cache.extraction.batching import DecodedVideo
from fer_cache.inputs.video import Sampling, count_frames, cut_clips, decode_video

WORKER_TIMEOUT = 600  # seconds a decode worker may take for one video before the run ends with an error


class VideoClips(Dataset):
    """One item per video: decoded once, all clips and views cut from the same frames (runs in workers)."""

    def __init__(self, root: Path, jobs: list[tuple[int, str]], sampling: Sampling, *,
                 clip_slots: int | None = None):
        self.root, self.jobs, self.sampling = root, jobs, sampling
        self.clip_slots = clip_slots  # a dense store's clip axis: a longer video is recorded as failed
        self.detector = None  # the face detector, made in each worker on first use (it cannot be pickled)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> DecodedVideo:
        index, rel = self.jobs[i]
        if self.sampling.face_crop and self.detector is None:
            from fer_cache.inputs.faces import load_detector
            self.detector = load_detector()
        try:
            frames = decode_video(self.root / rel, *self.sampling.decode_side)  # [F, H, W, 3]
            clips, frame_index = cut_clips(frames, self.sampling, self.detector)
            if self.clip_slots is not None and len(clips) > self.clip_slots:
                raise DecodeError(f"{len(clips)} clip starts, but the dense store was sized for {self.clip_slots} "
                                  "(the longest video when it was created); extract into a new store")
            if self.sampling.augment is not None:
                clips = with_copies(frames, clips, frame_index=frame_index, sampling=self.sampling,
                                    video=rel)  # [K, S + A, T, h, w, 3]
        except DecodeError as exc:
            return DecodedVideo.failure(index, str(exc))
        clips = torch.from_numpy(np.ascontiguousarray(clips))
        if torch.utils.data.get_worker_info() is not None:
            # Moved to shared memory here, not in the queue's feeder thread: a full /dev/shm or a file-size limit then
            # fails this call, which the DataLoader reports to the parent, instead of a lost item and a parent that
            # waits for it forever.
            clips.share_memory_()
        return DecodedVideo(index=index, clips=clips, frame_index=frame_index, n_frames=len(frames))


def with_copies(frames: np.ndarray, clips: np.ndarray, *, frame_index: np.ndarray, sampling: Sampling,
                video: str) -> np.ndarray:
    """Clean clip views [K, S, T, h, w, 3] and each clip's augmented copies [K, A, ...], cut from the same decoded
    frames, side by side [K, S + A, ...]: the encoder takes copies as further views, the writer splits them."""
    copies = [sampling.augment.copies_of(frames[indices], video, clip=k, crop=sampling.crop, mean=sampling.mean,
                                         std=sampling.std) for k, indices in enumerate(frame_index)]
    return np.concatenate([clips, np.stack(copies)], axis=1)


def longest_clip_count(root: Path, paths: list[str], sampling: Sampling, *, workers: int) -> int:
    """The clip axis of a new dense store: the clip count of its longest video, from every video's decoded frame
    count (containers' counts are unreliable); a video that does not decode counts none (it fails when encoded)."""
    from concurrent.futures import ThreadPoolExecutor

    def clips(path: str) -> int:
        try:
            return sampling.clip_count(count_frames(root / path))
        except DecodeError:
            return 1
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        return max(pool.map(clips, paths), default=1)


def quiet_worker(_: int) -> None:
    """Ctrl-C reaches the whole process group: decode workers leave it to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_reason(exc: RuntimeError) -> str:
    """The last line of a worker's traceback that says what went wrong, e.g. `unable to resize file ...`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else "no reason given")[:200]
