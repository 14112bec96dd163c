"""Compaction at extraction (`extraction: {rank: R}`): a seeded sample of the dataset's videos is encoded first and
a rank-R basis fitted on their tokens; the store is then created compact and every video (the sample's too) is
written as its coordinates on that basis. A resumed extraction reuses the store's basis instead of fitting again.

Axes: K clips, S views, N tokens, D width.
"""

import math
from dataclasses import dataclass

import numpy as np

from fer_cache.errors import FerCacheError
from fer_cache.extraction.writer import Failure, Finished
from fer_cache.store.basis import Basis, BasisFit, sample_positions
from fer_cache.store.compaction import reusable_basis


@dataclass(frozen=True, kw_only=True)
class BasisPlan:
    """What the basis of an extraction is fitted on: `videos` seeded videos, `tokens` tokens spread over them."""
    rank: int
    videos: int
    tokens: int
    seed: int
    dataset: str

    def fitted_on(self) -> dict:
        return {"sample": "extraction", "dataset": self.dataset, "basis_videos": self.videos,
                "sample_tokens": self.tokens, "seed": self.seed}

    def sample(self, n_videos: int) -> list[int]:
        """The positions (in the dataset's video order) of the videos the basis is fitted on."""
        count = min(self.videos, n_videos)
        return sorted(np.random.default_rng([self.seed, 7]).choice(n_videos, size=count, replace=False).tolist())

    def reusable(self, location: str, overwrite: bool) -> Basis | None:
        """The basis of the compact store being resumed, when it was fitted as this plan says."""
        return None if overwrite else reusable_basis(location, self.rank, self.fitted_on())


class BasisSampler:
    """Stands where the store's Writer stands while the sample is encoded: it keeps a seeded share of each sampled
    video's tokens in the basis fit instead of writing them."""

    def __init__(self, width: int, plan: BasisPlan, n_videos: int):
        self.fit, self.plan = BasisFit(width), plan
        self.per_video = math.ceil(plan.tokens / max(n_videos, 1))
        self.used = self.committed = 0
        self.error = None

    def start(self) -> None:
        """Nothing runs in the background (the Writer's thread interface)."""

    def put(self, job: Finished | Failure) -> None:
        self.committed += 1
        if isinstance(job, Failure) or not job.finite:
            return  # a video that does not decode, or with non-finite tokens, is left out of the fit
        tokens = job.tokens.reshape(-1, job.tokens.shape[-1])  # [K*S*N, D]
        self.fit.add(tokens[sample_positions(job.index, self.per_video, len(tokens), seed=self.plan.seed)])
        self.used += 1

    @staticmethod
    def buffer(shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def close(self) -> None:
        """Nothing to flush."""

    def basis(self) -> Basis:
        if self.used == 0:
            raise FerCacheError("no video of the basis sample could be encoded; check the dataset (fer-cache scan "
                                "--decode) or extract without rank")
        return self.fit.fit(self.plan.rank, self.plan.fitted_on() | {"videos": self.used})
