"""A store kept in memory between epochs (CacheReader.preload): each video's stored values, int8 scales and (compact
stores) normalisation factors, read once in the background while the caller plans and builds its probes. The first
use waits for them all and refuses non-finite ones, before any training."""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from fer_probe.data.decoding import as_tensor


class KeptVideos:
    def __init__(self):
        self._loading: Future | None = None  # the background reads, until the first use waits for them
        self._videos: dict[int, tuple] = {}  # video -> (stored values, int8 scales or None, factors or None)

    @property
    def active(self) -> bool:
        return self._loading is not None or bool(self._videos)

    def start(self, pool: ThreadPoolExecutor, keep: Callable[[int], tuple], count: int) -> None:
        """keep(v) for every video v < count, in one background thread of `pool`."""
        self._loading = pool.submit(lambda: {v: keep(v) for v in range(count)})

    def videos(self, require_finite: Callable[[int, torch.Tensor], None]) -> dict[int, tuple]:
        """The kept videos, once their reads are done and checked (require_finite raises for a non-finite one)."""
        if self._loading is not None:
            loading, self._loading = self._loading, None
            kept = loading.result()
            for v, (stored, scale, factors) in kept.items():
                require_finite(v, as_tensor(stored, scale))
                if factors is not None:
                    require_finite(v, factors[0])
            self._videos = kept
        return self._videos

    def clear(self) -> None:
        self._videos.clear()
