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
from fer_cache.inputs.video import Sampling, cut_clips, decode_video

WORKER_TIMEOUT = 600  # seconds a decode worker may take for one video before the run ends with an error


class VideoClips(Dataset):
    """One item per video: decoded once, all clips and views cut from the same frames (runs in workers)."""

    def __init__(self, root: Path, jobs: list[tuple[int, str]], sampling: Sampling):
        self.root, self.jobs, self.sampling = root, jobs, sampling
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
        except DecodeError as exc:
            return DecodedVideo.failure(index, str(exc))
        clips = torch.from_numpy(np.ascontiguousarray(clips))
        if torch.utils.data.get_worker_info() is not None:
            # Moved to shared memory here, not in the queue's feeder thread: a full /dev/shm or a file-size limit then
            # fails this call, which the DataLoader reports to the parent, instead of a lost item and a parent that
            # waits for it forever.
            clips.share_memory_()
        return DecodedVideo(index=index, clips=clips, frame_index=frame_index, n_frames=len(frames))


def quiet_worker(_: int) -> None:
    """Ctrl-C reaches the whole process group: decode workers leave it to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_reason(exc: RuntimeError) -> str:
    """The last line of a worker's traceback that says what went wrong, e.g. `unable to resize file ...`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else "no reason given")[:200]
