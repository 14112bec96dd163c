"""Read-only access to a schema-1 store through its handle (fer_cache.store: `Store`, its `Manifest`, and the
format's one token decoding), in the run's Precision, under the reader's ReadPolicy.

Axes: V videos, K clips, S views, N tokens, D width.
"""

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fer_cache.store import Store, StoreFormatError, schema
from fer_probe.data.coordinates import TokenBasis
from fer_probe.data.decoding import Decoding, Deferred, as_tensor, clip_means, finite
from fer_probe.data.precision import CPU_FLOAT32, Precision
from fer_probe.data.prefetch import prefetch
from fer_probe.errors import IncompleteStoreError, StoreReadError


@dataclass
class ReadPolicy:
    """How the reader hands tokens out; the reader's state, set by whoever drives the reads (a protocol, the trainer).

    recycle (CPU only): a streamed batch's or video's tokens are valid only until the next is asked for; their
    memory is then read into again, instead of fresh pages faulted in for every read (0.5 GB a paper-recipe batch).
    trainer_checks_batches: training batches are checked for non-finite tokens by the trainer (Batch.verify, called
    by a trainer whose probe outputs turn non-finite with any non-finite token they read: it checks only batches
    whose outputs are not finite), not on every batch (in the consuming thread). Test and validation videos are
    always checked."""
    recycle: bool = False
    trainer_checks_batches: bool = False


@dataclass(frozen=True)
class ClipRef:
    video: int  # row in the reader's (filtered) video list
    clip: int
    view: int


class CacheReader:
    """A store's videos, labels and subjects, and its tokens in the compute dtype, streamed chunk by chunk; a compact
    store's as normalised coordinates [..., R + 1] on its basis (data.coordinates), which the reader's precision
    carries (width D, stored_width R, token_width R + 1).

    Opening refuses a store with pending or failed videos (unless allow_incomplete) and one whose done videos miss
    token chunks (they would read back as zeros). Use it as a context manager, or call close()."""

    def __init__(self, location: str | Path, *, allow_incomplete: bool = False, memory_budget_mb: float = 0,
                 precision: Precision = CPU_FLOAT32, policy: ReadPolicy | None = None,
                 only: frozenset[str] | None = None):
        self.location, self.precision, self.policy = str(location), precision, policy or ReadPolicy()
        self.pin_memory = precision.cuda  # CUDA: page-locked batches, copied with non_blocking=True
        try:
            self.store = Store.open(self.location)
            manifest = self.store.manifest()
        except StoreFormatError as exc:
            raise StoreReadError(str(exc)) from exc
        self.attrs, self.basis = self.store.attrs, self.store.basis  # basis: compact stores' principal basis, or None
        if self.basis is not None:
            self.precision = precision.with_basis(TokenBasis.create(self.basis.mean, self.basis.components,
                                                                    precision.device))
        self.label_names, self.fingerprint = manifest.label_names, self.attrs.get("fingerprint", "")
        self.tokens = self.store.tokens
        self.storage_dtype = self.store.dtype  # how tokens are stored: float16, bfloat16, int8 or float32
        self.transfer_dtype = self.precision.transfer(self.storage_dtype) if self.basis is None else \
            self.precision.compute if self.precision.cuda else torch.float32  # normalised coordinates: computed
        self.decode, self.deferred = Decoding(self.storage_dtype, self.transfer_dtype, self.precision.basis), Deferred()
        usable = manifest.status == schema.DONE
        self.excluded = int((~usable).sum())
        if self.excluded and not allow_incomplete:
            raise IncompleteStoreError(f"{self.location}: {int((manifest.status == schema.PENDING).sum())} pending "
                                       f"and {int((manifest.status == schema.FAILED).sum())} failed videos; finish "
                                       "the extraction (rerun fer-cache extract) or leave them out")
        self._check_chunks(np.flatnonzero(usable), manifest.ids)
        if only is not None:  # a comparison across stores: the videos done in every one of them
            usable &= np.isin(np.asarray(manifest.ids, dtype=object), list(only))
            self.excluded = int((~usable).sum())
        labels = manifest.labels
        self.unlabelled = int((usable & (labels < 0)).sum())  # label -1: unknown, neither trained nor scored
        self.rows = np.flatnonzero(usable & (labels >= 0))  # store row of each usable video
        self.ids = [manifest.ids[i] for i in self.rows]
        self.subjects = [manifest.subjects[i] for i in self.rows]
        self.splits = [manifest.splits[i] for i in self.rows] if manifest.splits is not None else None
        self.labels = labels[self.rows]
        _, self.clips, self.views, self.num_tokens, self.stored_width = self.tokens.shape
        self.copies, self.dense = self.store.copies, self.store.dense  # augmented copies per clip; every clip start
        self.clip_counts = schema.clip_counts(self.store.group)[self.rows]  # [V] clips of each video (dense: own)
        self.width = self.basis.width if self.basis is not None else self.stored_width
        self.token_width = self.stored_width + (self.basis is not None)  # handed out: normalised coordinates R + 1
        self.memory_budget = memory_budget_mb * 1e6
        self._memory: dict[int, tuple] = {}  # preload's: stored values, int8 scales, a compact store's factors
        self._spare: list[torch.Tensor] = []  # buffers given back, to read into again (buffer, give_back)
        self._spare_lock = threading.Lock()  # taken by the reading threads, given back by the consumer
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fer-probe-read")

    def _check_chunks(self, done_rows: np.ndarray, ids: list[str]) -> None:
        missing = self.store.lost_chunks(done_rows)
        if missing:
            names = ", ".join(ids[r] for r in missing[:5]) + (f" (+{len(missing) - 5} more)" * (len(missing) > 5))
            raise StoreReadError(f"{self.location}: {len(missing)} video(s) marked done have no token chunks: "
                                 f"{names}; rerun `fer-cache extract` on this store to re-encode them")

    def __len__(self) -> int:
        return len(self.rows)

    def __enter__(self) -> "CacheReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._memory.clear()
        self._spare.clear()

    @property
    def clip_bytes(self) -> int:
        return self.num_tokens * self.stored_width * self.tokens.dtype.itemsize

    @property
    def encoder(self) -> dict:
        return dict(self.attrs.get("encoder") or {})

    def whole(self, v: int) -> tuple:
        """The selection of all of video v's clips: everything, or a dense store's first clip_counts[v]."""
        return (slice(0, int(self.clip_counts[v])),) if self.dense else ()

    def _read(self, v: int, selection: tuple = (), *, out: torch.Tensor | None = None, check: bool = True,
              array: str = "tokens") -> torch.Tensor:
        """Stored values of video v (or `selection` within [K, S]) -> tokens in the transfer dtype, checked finite
        (unless the caller checks them itself: require_finite), into `out` where given (read straight into it when
        it has the stored dtype); other encodings through the format's decoding (schema.decode_tokens)."""
        direct = out is not None and self.decode.direct
        stored, scale = self._stored(v, selection, out=out.numpy() if direct else None, array=array)
        values = out if direct or (not check and self.deferred.take(stored, scale, out)) else \
            self.decode(stored, scale, out)
        if check:
            self.require_finite(v, values)
        return values

    def _stored(self, v: int, selection: tuple = (), *, out: np.ndarray | None = None,
                array: str = "tokens") -> tuple[np.ndarray, np.ndarray | None]:  # values and int8 scales as stored
        try:
            return self.store.read(int(self.rows[v]), self.ids[v], selection, out=out, array=array)
        except StoreFormatError as exc:
            raise StoreReadError(str(exc)) from exc

    def require_finite(self, v: int, values: torch.Tensor) -> None:
        """Refuse non-finite tokens of video v. Prefetched reads leave this to the consuming thread: a torch
        reduction in the reading thread starts a second OpenMP team that takes a core from the training's matmuls."""
        if not finite(values):
            raise StoreReadError(f"{self.location}: video {self.ids[v]} has non-finite tokens; run "
                                 "`fer-cache verify` and re-extract it")

    def _values(self, v: int, selection: tuple, *, out: torch.Tensor | None, check: bool) -> torch.Tensor:
        """Video v's values (or `selection` within [K, S]) decoded from memory where preloaded (checked when
        loaded), else read; into `out` where given."""
        if v not in self._memory:
            return self._read(v, selection, out=out, check=check)
        stored, scale, factors = self._memory[v]
        if selection:
            stored, scale = stored[selection], None if scale is None else scale[selection]
            factors = None if factors is None else (factors[0][selection], factors[1][selection])
        return self.decode(stored, scale, out, factors=factors, consumer=not self.pin_memory)  # load_all: here

    def video(self, v: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """All clips and views of one video -> [K, S, N, D] (one shard read; into `out` where given), checked
        finite."""
        return self._values(v, self.whole(v), out=out, check=True)

    def clip(self, ref: ClipRef, out: torch.Tensor | None = None) -> torch.Tensor:
        """One clip view -> [N, D] (into `out` [N, D] where given), checked finite."""
        return self._values(ref.video, (ref.clip, ref.view), out=out, check=True)

    def view(self, v: int, s: int, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """Every clip of one view -> [K, N, D] (into `out` [K, N, D] where given), checked finite."""
        return self._values(v, (slice(None), s), out=out, check=True)

    def preload(self) -> bool:
        """Keep every stored value in memory when they fit the budget (read once, decoded per use: an int8 store's
        coordinates take a quarter of their float32 memory), checked finite; a compact store's factors with them."""
        per_token = self.stored_width * self.tokens.dtype.itemsize + 4 * (self.storage_dtype == "int8") \
            + 8 * (self.basis is not None)  # values, int8 scales, a compact store's factors
        needed = int(self.clip_counts.sum()) * self.views * self.num_tokens * per_token
        if needed > self.memory_budget or self._memory:
            return bool(self._memory)
        kept = list(self.load_all(lambda v: self._stored(v, self.whole(v)), range(len(self))))
        for v, (stored, scale) in enumerate(kept):  # after the reads: torch's threads would contend with them
            self.require_finite(v, as_tensor(stored, scale))
            factors = None if self.basis is None else self.decode.factors(stored, scale)
            if factors is not None:
                self.require_finite(v, factors[0])
            self._memory[v] = stored, scale, factors
        return True

    def load_all(self, load: Callable, items: Iterable, ahead: int = 2) -> Iterator:
        """load(item) for each item, read ahead in background threads (the reader's one prefetch); in this thread
        for a store in memory on the CPU: decoding alone, where a thread would take a core from the matmuls (and a
        compact store's reads on the CPU are normalised here too: data.decoding.Deferred)."""
        if self._memory and not self.pin_memory:
            return map(load, items)
        if self.basis is None or self.pin_memory:
            return prefetch(load, items, self._pool, ahead=ahead)
        return (self.deferred.finish(self.decode, done) for done in
                prefetch(self.deferred.read(load), items, self._pool, ahead=ahead))

    def videos(self, indices: Iterable[int], ahead: int = 2) -> Iterator[torch.Tensor]:
        """Yield [K, S, N, D] for each video index, prefetching (and pinning, for CUDA) in background threads, each
        checked finite; with the policy's recycle (CPU, streamed stores) valid until the next is asked for."""
        recycle = self.recycle

        def load(v: int) -> torch.Tensor:  # checked finite in the consuming thread
            if not recycle:
                return self.pinned(self._values(v, self.whole(v), out=None, check=False))
            shape = (int(self.clip_counts[v]), self.views, self.num_tokens, self.token_width)
            return self._values(v, self.whole(v), out=self.buffer(shape), check=False)
        indices = list(indices)
        for values, v in zip(self.load_all(load, indices, ahead), indices):  # resumed after the last: given back
            self.require_finite(v, values)
            yield values
            if recycle:
                self.give_back(values)

    def buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Memory to read tokens of `shape` into, in the transfer dtype: the smallest buffer given back that holds
        as many values (of any shape: a test video reads into a training batch's memory), else a new one
        (page-locked for CUDA). Fresh pages cost more than the read itself (faulting in 0.1-1.5 s a GB on the
        project's machine; 0.5 GB a paper-recipe batch), so a cross-validation reads into a few buffers throughout."""
        needed = math.prod(shape)
        spares = self._spare
        with self._spare_lock:
            fits = [i for i, spare in enumerate(spares) if spare.numel() >= needed]
            if fits:
                best = min(fits, key=lambda i: spares[i].numel())
                return spares.pop(best)[:needed].view(shape)
        return torch.empty(needed, dtype=self.transfer_dtype, pin_memory=self.pin_memory).view(shape)

    def give_back(self, values: torch.Tensor) -> None:
        """A buffer from `buffer` that its consumer is done with (the whole memory it was cut from is reused).
        CPU only: a page-locked one may still be on its way to the GPU."""
        if not self.pin_memory:
            with self._spare_lock:
                self._spare.append(values if values._base is None else values._base)

    @property
    def recycle(self) -> bool:
        """Whether streamed reads go into recycled buffers now (the policy's, on the CPU, for streamed stores)."""
        return self.policy.recycle and not self.pin_memory and not self._memory

    def read_batch(self, rows: np.ndarray, clips: np.ndarray, views: np.ndarray, *, all_clips: bool,
                   copies: np.ndarray | None = None) -> torch.Tensor:
        """Training inputs [B, N, D] (clip `clips[b]` of view `views[b]` of video `rows[b]`), or every clip of the
        view concatenated [B, K*N, D], into a buffer (recycled under the policy); with copies [B, K], each clip's
        augmented copy copies[b, k] instead of its clean view. Not checked finite: the consumer checks
        (ReadPolicy.trainer_checks_batches), in its own thread (require_finite)."""
        K, N, D = self.clips, self.num_tokens, self.token_width
        inputs = self.buffer((len(rows), K * N, D) if all_clips else (len(rows), N, D))  # [B, (K*)N, D]
        for b, (row, v, k, s) in enumerate(zip(inputs, rows, clips, views)):
            if copies is not None:  # one read per clip: each clip its own copy
                for clip in range(K) if all_clips else [int(k)]:
                    target = row.view(K, N, D)[clip] if all_clips else row
                    self._read(int(v), (clip, int(copies[b, clip])), out=target, check=False, array="augmented")
            elif all_clips:
                self._values(int(v), (slice(None), int(s)), out=row.view(K, N, D), check=False)
            else:
                self._values(int(v), (int(k), int(s)), out=row, check=False)
        return inputs

    def pinned(self, values: torch.Tensor) -> torch.Tensor:
        """Page-locked for CUDA (an asynchronous copy to the device); unchanged on the CPU."""
        return values.pin_memory() if self.pin_memory else values

    def mean_pooled(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """Token-mean of every clip view of the given videos (all by default) -> [V, K, S, D], in one streaming
        pass."""
        indices = list(range(len(self)) if indices is None else indices)
        out = np.empty((len(indices), self.clips, self.views, self.width), dtype=np.float32)
        videos = self.load_all(self.video, indices) if self.pin_memory else \
            self.videos(indices)  # never pinned: pooled on the CPU
        for i, values in enumerate(videos):
            out[i, :len(values)] = self.clip_means(values)  # a dense store's shorter video: zeros after its clips
        return out

    def clip_means(self, values: torch.Tensor) -> np.ndarray:
        """A video's tokens [K, S, N, D or R + 1] -> the token mean of each clip view [K, S, D] float32 (a compact
        store's mean coordinates lifted: the mean of x~ is mean + mean(z) @ components)."""
        basis = self.precision.basis
        return clip_means(values) if self.basis is None else basis.lift_means(clip_means(basis.coordinates(values)))

    def active_classes(self) -> list[int]:
        """Label indices that occur among the usable videos, in label_names order."""
        return sorted(set(self.labels.tolist()))
