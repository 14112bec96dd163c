"""Batches across video boundaries for the frozen encoder, and the writer thread that commits finished videos.

Axes: K clips per video, S views, T frames, h/w crop pixels, B clips in a batch, N tokens, D width.
"""

import queue
import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from fer_cache import store as st
from fer_cache.errors import FerCacheError
from fer_cache.video import normalise


@dataclass
class DecodedVideo:
    index: int
    clips: torch.Tensor | None  # [K, S, T, h, w, 3] uint8
    frame_index: np.ndarray | None  # [K, T]
    n_frames: int
    error: str = ""


@dataclass
class Finished:
    index: int
    tokens: np.ndarray  # [K, S, N, D] float32
    frame_index: np.ndarray
    n_frames: int


class Writer(threading.Thread):
    """Commits finished videos off the encoding thread; the only place where a video's status changes."""

    def __init__(self, group, depth: int = 8):
        super().__init__(daemon=True)
        self.group, self.jobs, self.error = group, queue.Queue(maxsize=depth), None

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is not None:
                continue
            try:
                if isinstance(job, tuple):  # (index, reason): a failure
                    st.mark_failed(self.group, *job)
                elif not np.isfinite(job.tokens).all():  # never commit NaN/inf as a done video
                    bad = int((~np.isfinite(job.tokens)).sum())
                    st.mark_failed(self.group, job.index, f"the encoder produced {bad} non-finite token values "
                                   "(NaN/inf); check the checkpoint, or store bfloat16 if float16 overflowed")
                else:
                    st.write_video(self.group, job.index, job.tokens, job.frame_index, job.n_frames)
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
                self.error = exc

    def put(self, job) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.join()
        if self.error is not None:
            raise FerCacheError(f"writing the store failed: {self.error}") from self.error


class Stager:
    """Host-to-device copies of uint8 clip batches. On CUDA they go through two pinned buffers used in turn, so the
    copy of the next batch overlaps the GPU's work on this one."""

    def __init__(self, device: torch.device):
        self.device = device
        self.buffers: list[torch.Tensor | None] = [None, None]
        self.copied: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0

    def __call__(self, clips: list[torch.Tensor]) -> torch.Tensor:
        if self.device.type != "cuda":
            return torch.stack(clips).to(self.device)  # [B, T, h, w, 3]
        i, self.turn = self.turn, 1 - self.turn
        if self.buffers[i] is None:
            self.buffers[i] = torch.empty((len(clips), *clips[0].shape), dtype=clips[0].dtype, pin_memory=True)
        if self.copied[i] is not None:
            self.copied[i].synchronize()  # the previous copy out of this buffer has finished
        torch.stack(clips, out=self.buffers[i])
        on_device = self.buffers[i].to(self.device, non_blocking=True)  # [B, T, h, w, 3]
        self.copied[i] = torch.cuda.Event()
        self.copied[i].record()
        return on_device


@dataclass
class Pending:
    decoded: DecodedVideo
    rows: list[np.ndarray]  # tokens [N, D] of its clip views encoded so far


class BatchEncoder:
    """Fills encoder batches across video boundaries and hands each finished video to the writer."""

    def __init__(self, model, writer: Writer, batch_size: int, device: torch.device, out_dtype: torch.dtype,
                 on_advance=None):
        self.model, self.writer, self.batch_size, self.device = model, writer, batch_size, device
        self.out_dtype = out_dtype  # float16 stores take float16 off the GPU: half the bytes to copy back
        self.stage = Stager(device)
        self.on_advance = on_advance or (lambda videos, clips, failed: None)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        self.pending: dict[int, Pending] = {}
        self.queue: list[tuple[int, torch.Tensor]] = []  # (video index, clip [T, h, w, 3])
        self.videos = self.clips = 0

    def add(self, decoded: DecodedVideo) -> None:
        if decoded.error:
            self.writer.put((decoded.index, decoded.error))
            self.on_advance(1, 0, 1)
            return
        flat = decoded.clips.flatten(0, 1)  # [K*S, T, h, w, 3]
        self.pending[decoded.index] = Pending(decoded, [])
        self.queue.extend((decoded.index, clip) for clip in flat)
        while len(self.queue) >= self.batch_size:
            self.run(self.queue[:self.batch_size])
            self.queue = self.queue[self.batch_size:]

    def flush(self) -> None:
        if self.queue:
            self.run(self.queue)
            self.queue = []

    def run(self, batch: list[tuple[int, torch.Tensor]]) -> None:
        clips = [clip for _, clip in batch]
        # Always a full batch (zero-padded): a clip's tokens then never depend on which clips share its batch,
        # so a resumed run writes exactly what an uninterrupted run would.
        clips += [torch.zeros_like(clips[0])] * (self.batch_size - len(clips))
        video = self.stage(clips)  # [B, T, h, w, 3] uint8 on the device
        with torch.inference_mode(), self.autocast:
            tokens = self.model(normalise(video)).to(self.out_dtype).cpu().numpy()[:len(batch)]  # [B, N, D]
        for (index, _), row in zip(batch, tokens):
            entry = self.pending[index]
            entry.rows.append(row)
            K, S = entry.decoded.clips.shape[:2]
            if len(entry.rows) == K * S:
                stacked = np.stack(entry.rows).reshape(K, S, *row.shape)  # [K, S, N, D]
                self.writer.put(Finished(index, stacked, entry.decoded.frame_index, entry.decoded.n_frames))
                del self.pending[index]
                self.videos += 1
                self.on_advance(1, 0, 0)
        self.clips += len(batch)
        self.on_advance(0, len(batch), 0)
