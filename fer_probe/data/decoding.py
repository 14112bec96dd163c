"""From a store's stored values to the tokens the reader hands out: the stored dtype decoded (schema.decode_tokens)
into the transfer dtype, and a compact store's coordinates normalised for the probes' LayerNorm
(data.coordinates): [stored * factor, rstd] per token, with the factors found once per video where it is kept in
memory, or on each read, the same bits either way.

Axes: K clips, S views, N tokens, D stored width (R on a compact store).
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fer_cache.store import schema
from fer_probe.data.coordinates import TokenBasis


def finite(values: torch.Tensor) -> bool:
    """All values finite? The smallest and largest value in one pass in the stored dtype (NaN propagates into both):
    no float32 copy of the tensor, which for a video's float16 tokens would be a fresh 189 MB every read."""
    if not values.numel():
        return True
    low, high = torch.aminmax(values)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def as_tensor(stored: np.ndarray, scale: np.ndarray | None) -> torch.Tensor:
    """What decides whether stored values decode finite, without decoding: an int8 store's scales, else the values
    (bfloat16's raw bits seen as bfloat16)."""
    if scale is not None:
        return torch.from_numpy(scale)
    return torch.from_numpy(stored.view(np.int16)).view(torch.bfloat16) if stored.dtype == np.uint16 else \
        torch.from_numpy(stored)


def clip_means(values: torch.Tensor) -> np.ndarray:
    """A video's tokens [K, S, N, D] -> the token mean of each clip view [K, S, D] float32: the pooled baselines'
    features, the same whether a pass of their own or another probe's test pass reads the video."""
    return values.mean(dim=2, dtype=torch.float32).numpy()


FACTOR_CHUNK = 2048  # tokens a chunk when finding factors: 2 MB of float32 coordinates at R = 256
Factors = tuple[torch.Tensor, torch.Tensor]  # per token [..., 1]: what takes a stored coordinate to rstd z, and rstd


@dataclass(frozen=True)
class Decoding:
    storage_dtype: str  # how tokens are stored: float16, bfloat16, int8 or float32
    transfer_dtype: torch.dtype  # how the reader hands them out
    basis: TokenBasis | None  # a compact store's: its coordinates are handed out normalised

    @property
    def as_stored(self) -> bool:
        return str(self.transfer_dtype).removeprefix("torch.") == self.storage_dtype

    @property
    def direct(self) -> bool:
        """Whether reads go straight into the caller's buffer (the stored bytes are the handed-out values)."""
        return self.as_stored and self.transfer_dtype != torch.bfloat16 and self.basis is None

    def __call__(self, stored: np.ndarray, scale: np.ndarray | None, out: torch.Tensor | None = None, *,
                 factors: Factors | None = None, consumer: bool = False) -> torch.Tensor:
        """Stored values -> tokens in the transfer dtype (into `out` where given: float32 decodes straight into it);
        a compact store's as normalised coordinates (`factors`: their per-token factors, where kept in memory).
        consumer: in the consuming thread, where int8 decodes with torch's threads (4x numpy's one)."""
        dtype = self.transfer_dtype
        if self.basis is not None:
            return self.normalised(stored, factors or self.factors(stored, scale), out)
        if self.as_stored and dtype == torch.bfloat16:  # the stored bits as they are
            values = torch.from_numpy(stored.view(np.int16)).view(torch.bfloat16)
        elif self.as_stored:
            values = torch.from_numpy(stored)
        elif consumer and scale is not None and out is not None and dtype == torch.float32:
            target = out.view(stored.shape).copy_(torch.from_numpy(stored))  # int8 to float32 is exact
            return target.mul_(torch.from_numpy(scale)[..., None]).view(out.shape)
        elif out is not None and dtype == torch.float32:
            schema.decode_tokens(stored, self.storage_dtype, scale, out=out.view(stored.shape).numpy())
            return out
        else:
            values = torch.from_numpy(schema.decode_tokens(stored, self.storage_dtype, scale)).to(dtype)
        return values if out is None else out.copy_(values.reshape(out.shape))

    def factors(self, stored: np.ndarray, scale: np.ndarray | None) -> Factors:
        """A compact store's stored coordinates -> per token (the factor that takes a stored value to rstd z, rstd)
        [..., 1] float32: normalised coordinates are [stored * factor, rstd]. A chunk of tokens at a time through one
        small buffer: a video's float32 coordinates at once would fault in fresh pages on every call (2-4x slower)."""
        rows = stored.reshape(-1, stored.shape[-1])  # [T, R]
        scales = None if scale is None else torch.from_numpy(scale.reshape(-1, 1))  # [T, 1]
        rstd = torch.empty(len(rows), 1)  # [T, 1]
        buffer = torch.empty(min(len(rows), FACTOR_CHUNK), rows.shape[1])
        for start in range(0, len(rows), FACTOR_CHUNK):
            n = slice(start, start + FACTOR_CHUNK)
            z = buffer[:len(rows[n])].copy_(torch.from_numpy(rows[n]))  # [n, R]
            if scales is not None:
                z.mul_(scales[n])
            rstd[n] = self.basis.rstd(z)
        rstd = rstd.view(*stored.shape[:-1], 1)
        return (rstd if scale is None else rstd * torch.from_numpy(scale)[..., None]), rstd

    def normalised(self, stored: np.ndarray, factors: Factors, out: torch.Tensor | None) -> torch.Tensor:
        """Normalised coordinates [..., R + 1] from stored ones and their factors, into `out` where given."""
        shape = (*stored.shape[:-1], stored.shape[-1] + 1)
        target = out.view(shape) if out is not None and out.dtype == torch.float32 else torch.empty(shape)
        factor, rstd = factors
        target[..., :-1].copy_(torch.from_numpy(stored)).mul_(factor)
        target[..., -1:].copy_(rstd)
        if out is None:
            return target.to(self.transfer_dtype)
        return out if target.data_ptr() == out.data_ptr() else out.copy_(target.view(out.shape))


class Deferred:
    """Decodes that a reading thread leaves to the consumer (a compact store read on the CPU: its normalisation runs
    torch's threads, which in a reading thread would take cores from the training's matmuls). Reads made inside
    read(item) record what to decode into which buffer; the consumer's finish decodes them. So a load must return
    the buffers it read into as they are: they hold their tokens only once finished."""

    def __init__(self):
        self._local = threading.local()

    def read(self, load: Callable) -> Callable:
        """load(item) -> (its result, the decodes it left)."""
        def deferring(item):
            self._local.pending = []
            try:
                return load(item), self._local.pending
            finally:
                self._local.pending = None
        return deferring

    def take(self, stored: np.ndarray, scale: np.ndarray | None, out: torch.Tensor | None) -> bool:
        """Record the decode of `stored` into `out` where this thread defers (and `out` is given)."""
        pending = getattr(self._local, "pending", None)
        if pending is None or out is None:
            return False
        pending.append((stored, scale, out))
        return True

    @staticmethod
    def finish(decode: "Decoding", done: tuple):
        result, pending = done
        for stored, scale, out in pending:
            decode(stored, scale, out)
        return result
