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

    def epoch(self, videos: np.ndarray, rng: np.random.Generator, batch_size: int, *, all_clips: bool) \
            -> Iterator[Batch]:
        """One epoch of batches over `videos` in a random order: one random clip/view per video, or every clip of
        one random view concatenated along the tokens. The draws depend only on rng, never on token values."""
        order = rng.permutation(videos)
        clips = rng.integers(0, self.reader.clips, size=len(order))
        views = rng.integers(0, self.reader.views, size=len(order))
        chunks = [slice(i, i + batch_size) for i in range(0, len(order), batch_size)]
        if self.kind == "pooled":
            yield from self._pooled_epoch(order, views, chunks, rng=rng, batch_size=batch_size, all_clips=all_clips)
            return
        if all_clips:
            def load(c: slice) -> torch.Tensor:
                views_k = [self.reader.view(int(v), int(s)) for v, s in zip(order[c], views[c])]  # B x [K, N, D]
                return self._stacked([x.reshape(-1, x.shape[-1]) for x in views_k])  # [B, K*N, D]
        else:
            def load(c: slice) -> torch.Tensor:
                refs = [ClipRef(int(v), int(k), int(s)) for v, k, s in zip(order[c], clips[c], views[c])]
                return self._stacked([self.reader.clip(r) for r in refs])  # [B, N, D]
        for c, inputs in zip(chunks, self.reader.load_all(load, chunks)):
            yield Batch(inputs, order[c])

    def _stacked(self, values: list[torch.Tensor]) -> torch.Tensor:
        """One batch [B, ...], stacked straight into page-locked memory for CUDA (in the prefetch thread)."""
        if not self.reader.pin_memory:
            return torch.stack(values)
        return torch.stack(values, out=torch.empty((len(values), *values[0].shape), dtype=values[0].dtype,
                                                   pin_memory=True))

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

    def test_inputs(self, videos: list[int], all_clips: bool, one_clip: bool) -> Iterator[torch.Tensor]:
        """Per test video, the inputs of every scored probe pass: [M, N, D] (or [M, D] pooled).

        Trained on concatenated clips: one pass per view over all clips ([S, K*N, D]), or the first view only with
        one_clip. Trained on single clips: every clip view ([K*S, N, D]), or the middle clip's first view."""
        K, S = self.reader.clips, self.reader.views
        middle = K // 2
        if self.kind == "pooled":
            for v in videos:
                values = self.pooled[v]  # [K, S, D]
                if all_clips:
                    yield values.mean(dim=0)[:1] if one_clip else values.mean(dim=0)  # [S or 1, D]
                else:
                    yield values[middle, :1] if one_clip else values.reshape(K * S, -1)  # [1 or K*S, D]
            return
        for values in self.reader.videos(videos):  # [K, S, N, D]
            if all_clips:
                joined = values.transpose(0, 1).reshape(S, K * values.shape[2], -1)  # [S, K*N, D]
                yield joined[:1] if one_clip else joined
            else:
                yield values[middle, :1] if one_clip else values.reshape(K * S, *values.shape[2:])  # [1 or K*S, N, D]
