"""The batch encoder: fills fixed-size encoder batches across video boundaries, keeps the device busy by collecting
each batch's tokens only after the next batch is launched, and hands every finished video to the writer.

Axes: K clips per video, S views, T frames, h/w crop pixels, B clips in a batch, N tokens, D width.
"""

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from fer_cache.extraction.staging import Download, Downloader, Uploader
from fer_cache.extraction.writer import Failure, Finished, Writer


@dataclass(kw_only=True)
class DecodedVideo:
    """What a decode worker returns: every clip view of one video, or why it could not be decoded."""
    index: int  # store row
    clips: torch.Tensor | None  # [K, S, T, h, w, 3] uint8
    frame_index: np.ndarray | None  # [K, T]
    n_frames: int
    error: str = ""

    @classmethod
    def failure(cls, index: int, reason: str) -> "DecodedVideo":
        return cls(index=index, clips=None, frame_index=None, n_frames=0, error=reason)


@dataclass(frozen=True)
class Advance:
    """Progress of the pipeline, reported after each step."""
    videos: int = 0  # videos finished (written or failed)
    clips: int = 0  # clip views encoded
    failed: int = 0  # videos that failed to decode


@dataclass(kw_only=True)
class VideoBuffer:
    """A video being encoded: its tokens fill in as its clip views come out of the encoder."""
    decoded: DecodedVideo
    tokens: np.ndarray  # [K, S, N, D]
    filled: int = 0
    finite: bool = True


@dataclass
class InFlight:
    """A launched batch: which (video, clip view) each row belongs to, and its tokens on their way to the host."""
    slots: list[tuple[int, int]]  # (store row, position k * S + s)
    download: Download


class BatchEncoder:
    """Encodes clip views in full batches; a clip's tokens never depend on which clips share its batch, because
    batches are always full (zero-padded), so a resumed run writes exactly what an uninterrupted one would."""

    def __init__(self, model, writer: Writer, *, batch_size: int, device: torch.device, out_dtype: torch.dtype,
                 prepare: Callable[[torch.Tensor], torch.Tensor],
                 on_advance: Callable[[Advance], None] | None = None):
        self.model, self.writer, self.batch_size, self.device = model, writer, batch_size, device
        self.out_dtype = out_dtype  # float16 stores take float16 off the GPU: half the bytes to copy back
        self.prepare = prepare  # uint8 [B, T, h, w, 3] on the device -> the encoder's input
        self.upload, self.download = Uploader(device), Downloader(device)
        self.on_advance = on_advance or (lambda advance: None)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        self.videos_in_work: dict[int, VideoBuffer] = {}
        self.queue: list[tuple[int, int, torch.Tensor]] = []  # (store row, position, clip [T, h, w, 3])
        self.inflight: InFlight | None = None
        self.videos = self.clips = 0

    def add(self, decoded: DecodedVideo) -> None:
        if decoded.error:
            self.writer.put(Failure(decoded.index, decoded.error))
            self.on_advance(Advance(videos=1, failed=1))
            return
        flat = decoded.clips.flatten(0, 1)  # [K*S, T, h, w, 3]
        self.videos_in_work[decoded.index] = VideoBuffer(decoded=decoded, tokens=np.empty(0))
        self.queue.extend((decoded.index, position, clip) for position, clip in enumerate(flat))
        while len(self.queue) >= self.batch_size:
            self.launch(self.queue[:self.batch_size])
            self.queue = self.queue[self.batch_size:]

    def flush(self) -> None:
        """Encode what is queued, then collect the last batch."""
        if self.queue:
            self.launch(self.queue)
            self.queue = []
        self.drain()

    def drain(self) -> None:
        """Collect the batch still on the device (on a stop, queued clips are left for the resumed run)."""
        if self.inflight is not None:
            self.collect(self.inflight)
            self.inflight = None

    def launch(self, batch: list[tuple[int, int, torch.Tensor]]) -> None:
        """Start one batch on the device, then collect the previous one while the device works."""
        clips = [clip for _, _, clip in batch]
        clips += [torch.zeros_like(clips[0])] * (self.batch_size - len(clips))
        video = self.upload(clips)  # [B, T, h, w, 3] uint8 on the device
        with torch.inference_mode(), self.autocast:
            tokens = self.model(self.prepare(video)).to(self.out_dtype)  # [B, N, D]
        previous, self.inflight = self.inflight, InFlight([(i, p) for i, p, _ in batch],
                                                          self.download(tokens[:len(batch)]))
        if previous is not None:
            self.collect(previous)

    def collect(self, inflight: InFlight) -> None:
        tokens, finite = inflight.download.rows()  # [B, N, D], [B]
        for (index, position), row, ok in zip(inflight.slots, tokens, finite):
            entry = self.videos_in_work[index]
            K, S = entry.decoded.clips.shape[:2]
            if entry.tokens.size == 0:  # page-aligned: the writer can send it to disk past the page cache
                entry.tokens = self.writer.buffer((K, S, *row.shape), row.dtype)  # [K, S, N, D]
            entry.tokens[position // S, position % S] = row
            entry.finite &= bool(ok)
            entry.filled += 1
            if entry.filled == K * S:
                self.writer.put(Finished(index=index, tokens=entry.tokens, frame_index=entry.decoded.frame_index,
                                         n_frames=entry.decoded.n_frames,
                                         finite=entry.finite))
                del self.videos_in_work[index]
                self.videos += 1
                self.on_advance(Advance(videos=1))
        self.clips += len(inflight.slots)
        self.on_advance(Advance(clips=len(inflight.slots)))
