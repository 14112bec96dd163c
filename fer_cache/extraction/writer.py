"""The writer thread: the only place where a video's status changes. It commits whole videos off the encoding
thread, so disk I/O overlaps the encoder.

Axes: K clips per video, S views, N tokens, D width.
"""

import queue
import threading
from dataclasses import dataclass

import numpy as np

from fer_cache.errors import StoreError, no_space
from fer_cache.store import Store, schema, writing


@dataclass(kw_only=True)
class Finished:
    """A video whose every clip view is encoded."""
    index: int  # store row
    tokens: np.ndarray  # [K, S, N, D] float16 or float32
    frame_index: np.ndarray  # [K, T]
    n_frames: int
    finite: bool = True  # checked where the tokens were made (on the GPU for CUDA runs)


@dataclass
class Failure:
    """A video that could not be decoded, with the one-line reason recorded in the store."""
    index: int
    reason: str


def nonfinite_count(tokens: np.ndarray) -> int:
    return int((~np.isfinite(tokens)).sum())


class Writer(threading.Thread):
    """Commits Finished and Failure records in order; a write error stops it and is raised by put() or close()."""

    def __init__(self, store: Store, depth: int = 8):
        super().__init__(daemon=True, name="fer-cache-writer")
        self.store, self.jobs, self.error = store, queue.Queue(maxsize=depth), None
        self.committed = 0

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is not None:
                continue
            try:
                self.commit(job)
            except Exception as exc:  # noqa: BLE001 - handed to the encoding thread, which raises it
                self.error = exc

    def commit(self, job: Finished | Failure) -> None:
        if isinstance(job, Failure):
            writing.mark_failed(self.store, job.index, job.reason)
        elif not job.finite:  # never commit NaN/inf as a done video
            writing.mark_failed(self.store, job.index, f"the encoder produced {nonfinite_count(job.tokens)} non-finite "
                           "token values (NaN/inf); check the checkpoint, or store bfloat16 if float16 overflowed")
        else:
            writing.write_video(self.store, job.index, job.tokens, frame_index=job.frame_index, n_frames=job.n_frames)
        self.committed += 1

    def buffer(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """Memory for one video's tokens in the form the store writes fastest (page-aligned for O_DIRECT)."""
        return writing.video_buffer(self.store, shape, dtype)

    def failed(self) -> StoreError:
        """One line: which store, what went wrong, how many videos are safe, and how to go on."""
        location = self.store.location
        try:
            done = int((self.store.group["videos/status"][:] == schema.DONE).sum())
            saved = f"{done} of {self.store.tokens.shape[0]}"
        except Exception:  # noqa: BLE001 - the count is a courtesy; the store may be unreadable now
            saved = "the finished"
        if no_space(self.error):
            return StoreError(f"no space left while writing {location}: {saved} videos are saved; free space and "
                              "rerun the same command to resume")
        return StoreError(f"writing {location} failed ({type(self.error).__name__}: {self.error}); {saved} videos are "
                          "saved; rerun the same command to resume")

    def put(self, job: Finished | Failure) -> None:
        if self.error is not None:
            raise self.failed() from self.error
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.join()
        if self.error is not None:
            raise self.failed() from self.error
