"""Which cached clips a probe sees: training batches (one random clip/view, or every clip of a view concatenated),
and every scored clip view of a test video.

Axes: B videos in a batch, K clips, S views, N tokens, D width, M scored inputs of a video.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fer_probe.data.inputs import InputKind
from fer_probe.data.reader import CacheReader
from fer_probe.errors import FerProbeError


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, N, D] or [B, K*N, D] tokens, or [B, D] pooled features
    videos: np.ndarray  # [B] reader rows
    clips: np.ndarray | None = None  # [B] the clip drawn for each video (tokens only)
    joined: int = 1  # clips concatenated in each input: K for [B, K*N, D]
    verify: Callable[[], None] | None = None  # the finite check of its tokens where the reader left it to the trainer

    def one_clip(self, x: torch.Tensor) -> torch.Tensor:
        """x, this batch's inputs on the compute device -> the drawn clip of each video [B, N, D]: what a probe that
        trains on one clip per video gets from a batch of concatenated clips (the draws of its own run)."""
        if self.joined == 1:
            return x
        rows = torch.arange(len(x), device=x.device)
        return x.unflatten(1, (self.joined, -1))[rows, torch.from_numpy(self.clips).to(x.device)]  # [B, N, D]


class TokenSource:
    """Training and test inputs for a probe: raw tokens for attentive probes, mean-pooled tokens for baselines."""

    def __init__(self, reader: CacheReader, pooled: torch.Tensor | None = None):
        self.reader = reader
        self.pooled = pooled  # [V, K, S, D] float32 for the pooled probes; None for the attentive probes
        self.kind = InputKind.TOKENS if pooled is None else InputKind.POOLED
        self.means: np.ndarray | None = None  # [V, K, S, D] clip means of the videos read whole, when recording
        self.measured = np.zeros(len(reader), dtype=bool)  # [V] which rows of `means` hold a video's means

    def samples_per_epoch(self, n_videos: int, all_clips: bool) -> int:
        """Training samples an epoch draws: the pooled baselines see every clip view when training on one clip."""
        if self.kind == InputKind.POOLED and not all_clips:
            return n_videos * self.reader.clips * self.reader.views
        return n_videos

    def epoch(self, videos: np.ndarray, rng: np.random.Generator, batch_size: int, *,
              all_clips: bool) -> Iterator[Batch]:
        """One epoch of batches over `videos` in a random order: one random clip/view per video, or every clip of
        one random view concatenated along the tokens. The draws depend only on rng, never on token values, and are
        the same in both modes: a concatenated batch carries the clip a one-clip epoch would have read (Batch.clips).
        Under the reader's policy a batch's memory is recycled once the next is asked for (ReadPolicy.recycle)."""
        return self.epochs(videos, [rng], batch_size, all_clips=all_clips)[0]

    def epochs(self, videos: np.ndarray, rngs: list[np.random.Generator], batch_size: int, *,
               all_clips: bool, copies: list[np.ndarray] | None = None) -> list[Iterator[Batch]]:
        """One epoch (as `epoch`) per rng, to be consumed in order. Their token reads form one stream, one batch
        ahead across epoch boundaries, that starts on this call: the first batch is read while the caller creates
        its probes, and no later epoch starts by waiting for its first batch. Each batch is checked finite here, or
        carries its check as Batch.verify where the reader's policy leaves it to the trainer. copies (per epoch, the
        augmented copy of every clip of every reader video [V, K]) trains on those copies instead of clean views."""
        if self.reader.dense and (all_clips or self.kind == InputKind.POOLED):
            raise FerProbeError(f"{self.reader.location} holds every clip start (each video its own clip count): "
                                "train on a store of fixed clips and test on this one with --test-store")
        draws = []
        for rng in rngs:
            order = rng.permutation(videos)
            high = self.reader.clip_counts[order] if self.reader.dense else self.reader.clips  # a clip it has
            draws.append((order, rng.integers(0, high, size=len(order)),
                          rng.integers(0, self.reader.views, size=len(order))))
        if self.kind == InputKind.POOLED:
            return [self._pooled_epoch(order, views, rng=rng, batch_size=batch_size, all_clips=all_clips)
                    for rng, (order, _, views) in zip(rngs, draws)]
        copies = copies or [None] * len(rngs)
        batches = [[(order[i:i + batch_size], clips[i:i + batch_size], views[i:i + batch_size],
                     None if drawn is None else drawn[order[i:i + batch_size]])
                    for i in range(0, len(order), batch_size)] for (order, clips, views), drawn in zip(draws, copies)]
        policy = self.reader.policy
        check, recycle = not policy.trainer_checks_batches, policy.recycle

        def load(batch: tuple) -> torch.Tensor:
            rows, clips, views, drawn = batch
            return self.reader.read_batch(rows, clips, views, all_clips=all_clips, copies=drawn)
        # one batch read ahead: reading a batch takes a fraction of the time spent training on it
        stream = self.reader.load_all(load, [batch for epoch in batches for batch in epoch], ahead=1)
        joined = self.reader.clips if all_clips else 1

        def one_epoch(epoch: list) -> Iterator[Batch]:
            for (rows, clips, _, _), inputs in zip(epoch, stream):
                def verify(inputs: torch.Tensor = inputs, rows: np.ndarray = rows) -> None:
                    for row, v in zip(inputs, rows):  # here, not in the reading thread (CacheReader.require_finite)
                        self.reader.require_finite(int(v), row)
                if check:
                    verify()
                yield Batch(inputs, rows, clips, joined, None if check else verify)
                if recycle:
                    self.reader.give_back(inputs)
        return [one_epoch(epoch) for epoch in batches]

    def _pooled_epoch(self, order, views, *, rng, batch_size: int, all_clips: bool) -> Iterator[Batch]:
        if all_clips:
            for c in (slice(i, i + batch_size) for i in range(0, len(order), batch_size)):
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
        if self.kind == InputKind.POOLED:
            yield from (self.pooled[v, :int(self.reader.clip_counts[v])] for v in videos)
            return
        for values, v in zip(self.reader.videos(videos), videos):  # reader first: its last is given back
            if self.means is not None and not self.measured[v]:
                self.means[v, :len(values)], self.measured[v] = self.reader.clip_means(values), True
            yield values

    def record_means(self) -> None:
        """From now on, keep the clip means of every video read whole (test and validation passes): the pooled
        baselines' features, so that they need no pass over the store of their own (means)."""
        if self.means is None:
            self.means = np.zeros((len(self.reader), self.reader.clips, self.reader.views, self.reader.width),
                                  dtype=np.float32)

    def pooled_means(self) -> torch.Tensor:
        """The clip means of every video [V, K, S, D] (record_means): those no pass has read whole yet are read now
        (with k-fold cross-validation every video is some fold's test video, so none is)."""
        self.record_means()
        missing = np.flatnonzero(~self.measured)
        if len(missing):
            self.means[missing], self.measured[missing] = self.reader.mean_pooled(missing.tolist()), True
        return torch.from_numpy(self.means)

    def scored_inputs(self, values: torch.Tensor, all_clips: bool, test_clips: str) -> torch.Tensor:
        """A test video's values -> the inputs of every scored probe pass: [M, N, D] (or [M, D] pooled).

        Trained on concatenated clips: one pass per view over all clips ([S, K*N, D]), the first view only (test_clips
        one), or one pass per clip view (each, [K*S, N, D]: the reference's final evaluation scores one clip at a time).
        Trained on single clips: every clip view ([K*S, N, D]; all and each alike), or the middle clip's first view."""
        K, S = len(values), self.reader.views  # a dense store's video: its own clips
        middle, one_clip = K // 2, test_clips == "one"
        all_clips = all_clips and test_clips != "each"
        if self.kind == InputKind.POOLED:
            if all_clips:
                return values.mean(dim=0)[:1] if one_clip else values.mean(dim=0)  # [S or 1, D]
            return values[middle, :1] if one_clip else values.reshape(K * S, -1)  # [1 or K*S, D]
        if all_clips:
            joined = values.transpose(0, 1).reshape(S, K * values.shape[2], -1)  # [S, K*N, D]
            return joined[:1] if one_clip else joined
        return values[middle, :1] if one_clip else values.reshape(K * S, *values.shape[2:])  # [1 or K*S, N, D]
