"""Which cached clips a probe sees: training batches (one random clip/view, or every clip of a view concatenated),
and every scored clip view of a test video.

Axes: B videos in a batch, K clips, S views, N tokens, D width, M scored inputs of a video.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fer_probe.reader import CacheReader, ClipRef


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, N, D] or [B, K*N, D] tokens, or [B, D] pooled features
    videos: np.ndarray  # [B] reader rows


class TokenSource:
    """Training and test inputs for a probe: raw tokens for attentive probes, mean-pooled tokens for baselines."""

    def __init__(self, reader: CacheReader, pooled: torch.Tensor | None = None):
        self.reader = reader
        self.pooled = pooled  # [V, K, S, D] float32 for the pooled probes; None for the attentive probes
        self.kind = "tokens" if pooled is None else "pooled"

    def samples_per_epoch(self, n_videos: int, all_clips: bool) -> int:
        """Training samples an epoch draws: the pooled baselines see every clip view when training on one clip."""
        if self.kind == "pooled" and not all_clips:
            return n_videos * self.reader.clips * self.reader.views
        return n_videos

    def epoch(self, videos: np.ndarray, rng: np.random.Generator, batch_size: int, *, all_clips: bool,
              recycle: bool = False) -> Iterator[Batch]:
        """One epoch of batches over `videos` in a random order: one random clip/view per video, or every clip of
        one random view concatenated along the tokens. The draws depend only on rng, never on token values.

        recycle: a batch's tokens are valid only until the next batch is asked for, and their memory is then reused
        for a later batch (CPU only): no fresh pages to fault in for every batch (a paper-recipe batch is 0.5 GB)."""
        order = rng.permutation(videos)
        clips = rng.integers(0, self.reader.clips, size=len(order))
        views = rng.integers(0, self.reader.views, size=len(order))
        chunks = [slice(i, i + batch_size) for i in range(0, len(order), batch_size)]
        if self.kind == "pooled":
            yield from self._pooled_epoch(order, views, chunks, rng=rng, batch_size=batch_size, all_clips=all_clips)
            return
        K, N, D = self.reader.clips, self.reader.num_tokens, self.reader.width
        if all_clips:
            def load(c: slice) -> torch.Tensor:
                batch = self.reader.buffer((len(order[c]), K * N, D))  # [B, K*N, D]
                for row, v, s in zip(batch, order[c], views[c]):
                    self.reader.view(int(v), int(s), out=row.view(K, N, D), check=False)
                return batch
        else:
            def load(c: slice) -> torch.Tensor:
                batch = self.reader.buffer((len(order[c]), N, D))  # [B, N, D]
                for row, v, k, s in zip(batch, order[c], clips[c], views[c]):
                    self.reader.clip(ClipRef(int(v), int(k), int(s)), out=row, check=False)
                return batch
        # one batch read ahead: reading a batch takes a fraction of the time spent training on it
        for c, inputs in zip(chunks, self.reader.load_all(load, chunks, ahead=1)):
            for row, v in zip(inputs, order[c]):  # here, not in the reading thread (CacheReader.require_finite)
                self.reader.require_finite(int(v), row)
            yield Batch(inputs, order[c])
            if recycle:
                self.reader.give_back(inputs)

    def _pooled_epoch(self, order, views, chunks, *, rng, batch_size: int, all_clips: bool) -> Iterator[Batch]:
        if all_clips:
            for c in chunks:
                yield Batch(self.pooled[order[c], :, views[c]].mean(dim=1), order[c])  # [B, D]
            return
        K, S = self.reader.clips, self.reader.views
        samples = rng.permutation(len(order) * K * S)
        video, clip, view = order[samples // (K * S)], (samples // S) % K, samples % S
        for i in range(0, len(samples), batch_size):
            c = slice(i, i + batch_size)
            yield Batch(self.pooled[video[c], clip[c], view[c]], video[c])  # [B, D]

    def test_videos(self, videos: list[int]) -> Iterator[torch.Tensor]:
        """Per test video, everything stored of it: tokens [K, S, N, D], valid until the next is drawn (or the
        pooled features [K, S, D])."""
        if self.kind == "pooled":
            yield from (self.pooled[v] for v in videos)
        else:
            yield from self.reader.videos(videos, recycle=True)

    def scored_inputs(self, values: torch.Tensor, all_clips: bool, one_clip: bool) -> torch.Tensor:
        """A test video's values -> the inputs of every scored probe pass: [M, N, D] (or [M, D] pooled).

        Trained on concatenated clips: one pass per view over all clips ([S, K*N, D]), or the first view only with
        one_clip. Trained on single clips: every clip view ([K*S, N, D]), or the middle clip's first view."""
        K, S = self.reader.clips, self.reader.views
        middle = K // 2
        if self.kind == "pooled":
            if all_clips:
                return values.mean(dim=0)[:1] if one_clip else values.mean(dim=0)  # [S or 1, D]
            return values[middle, :1] if one_clip else values.reshape(K * S, -1)  # [1 or K*S, D]
        if all_clips:
            joined = values.transpose(0, 1).reshape(S, K * values.shape[2], -1)  # [S, K*N, D]
            return joined[:1] if one_clip else joined
        return values[middle, :1] if one_clip else values.reshape(K * S, *values.shape[2:])  # [1 or K*S, N, D]
