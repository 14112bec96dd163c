"""Read-only access to a schema-1 store (DESIGN section 4), written against the contract, not fer_cache's code.

Axes: V videos, K clips, S views, N tokens, D width.
"""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zarr

from fer_probe.errors import StoreReadError

SCHEMA_VERSION = 1
PENDING, DONE, FAILED = 0, 1, 2


@dataclass(frozen=True)
class ClipRef:
    video: int  # row in the reader's (filtered) video list
    clip: int
    view: int


def _strings(array) -> list[str]:
    """zarr StringDType arrays -> plain Python str (StringDType breaks scikit-learn)."""
    return [str(s) for s in array[:].tolist()]


class CacheReader:
    """A store's videos, labels and subjects, and its tokens as float32, streamed chunk by chunk."""

    def __init__(self, location: str | Path, allow_incomplete: bool = False, memory_budget_mb: float = 0,
                 dtype: torch.dtype = torch.float32):
        self.location = str(location)
        self.compute_dtype = dtype  # tokens come out as float32, or bfloat16 for the fast CPU/GPU path
        self.group = self._open()
        attrs = dict(self.group.attrs)
        if attrs.get("fer_cache_schema") != SCHEMA_VERSION:
            raise StoreReadError(f"{self.location}: store schema {attrs.get('fer_cache_schema')!r}; this tool "
                                 f"reads schema {SCHEMA_VERSION} (re-extract or upgrade fer-jepa)")
        for node in ("tokens", "videos/id", "videos/label", "videos/subject", "videos/status"):
            if node not in self.group:
                raise StoreReadError(f"{self.location}: missing '{node}'; not a complete fer-cache store")
        self.attrs = attrs
        self.label_names: list[str] = list(attrs.get("label_names", []))
        self.fingerprint: str = attrs.get("fingerprint", "")
        self.tokens = self.group["tokens"]
        self.dtype = self.tokens.attrs.get("storage_dtype", attrs.get("storage", {}).get("dtype", "float16"))
        self.scales = self.group["tokens_scale"] if self.dtype == "int8" else None
        status = self.group["videos/status"][:]
        usable = status == DONE
        self.excluded = int((~usable).sum())
        if self.excluded and not allow_incomplete:
            raise StoreReadError(f"{self.location}: {int((status == PENDING).sum())} pending and "
                                 f"{int((status == FAILED).sum())} failed videos; finish the extraction or pass "
                                 "--allow-incomplete to leave them out")
        labels = self.group["videos/label"][:].astype(np.int64)
        if labels.size and labels.max() >= len(self.label_names):
            raise StoreReadError(f"{self.location}: videos/label holds index {labels.max()} but label_names has "
                                 f"{len(self.label_names)} names; the store is inconsistent")
        self.unlabelled = int((usable & (labels < 0)).sum())  # label -1: unknown, neither trained nor scored
        self.rows = np.flatnonzero(usable & (labels >= 0))  # store row of each usable video
        ids, subjects = _strings(self.group["videos/id"]), _strings(self.group["videos/subject"])
        self.ids = [ids[i] for i in self.rows]
        self.subjects = [subjects[i] for i in self.rows]
        self.labels = labels[self.rows]
        _, self.clips, self.views, self.num_tokens, self.width = self.tokens.shape
        self.memory_budget = memory_budget_mb * 1e6
        self._memory: dict[int, torch.Tensor] = {}
        self._pool = ThreadPoolExecutor(max_workers=4)

    def _open(self) -> zarr.Group:
        if "://" not in self.location and not Path(self.location).exists():
            raise StoreReadError(f"{self.location}: no such store; check the path or run fer-cache extract")
        try:
            return zarr.open_group(self.location, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
                json.JSONDecodeError, ValueError) as exc:
            raise StoreReadError(f"{self.location}: not a Zarr store written by fer-cache ({type(exc).__name__})") \
                from exc

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def clip_bytes(self) -> int:
        return self.num_tokens * self.width * self.tokens.dtype.itemsize

    def _decode(self, stored: np.ndarray, scale: np.ndarray | None) -> torch.Tensor:
        """Stored values -> tokens in the compute dtype (torch's casts are about twice as fast as numpy's)."""
        if self.dtype == "bfloat16":
            values = torch.from_numpy(stored.view(np.int16)).view(torch.bfloat16)
        elif self.dtype == "int8":
            values = torch.from_numpy(stored).float() * torch.from_numpy(scale)[..., None]
        else:
            values = torch.from_numpy(stored)
        return values.to(self.compute_dtype)

    def video(self, v: int) -> torch.Tensor:
        """All clips and views of one video -> [K, S, N, D] (one shard read)."""
        if v in self._memory:
            return self._memory[v]
        row = int(self.rows[v])
        values = self._decode(self.tokens[row], self.scales[row] if self.scales is not None else None)
        if not torch.isfinite(values).all():
            raise StoreReadError(f"{self.location}: video {self.ids[v]} has non-finite tokens; run "
                                 "`fer-cache verify` and re-extract it")
        return values

    def preload(self) -> bool:
        """Keep every decoded video in memory when the whole store fits the budget (read once, reuse per fold)."""
        itemsize = torch.finfo(self.compute_dtype).bits // 8
        needed = len(self) * self.clips * self.views * self.num_tokens * self.width * itemsize
        if needed > self.memory_budget or self._memory:
            return bool(self._memory)
        for v, values in enumerate(self.videos(list(range(len(self))))):
            self._memory[v] = values
        return True

    def clip(self, ref: ClipRef) -> torch.Tensor:
        """One clip view -> [N, D]."""
        if ref.video in self._memory:
            return self._memory[ref.video][ref.clip, ref.view]
        row = int(self.rows[ref.video])
        scale = self.scales[row, ref.clip, ref.view] if self.scales is not None else None
        return self._decode(self.tokens[row, ref.clip, ref.view], scale)

    def batches(self, batches: list[list[ClipRef]], ahead: int = 2) -> Iterator[torch.Tensor]:
        """Yield [B, N, D] per list of refs, reading `ahead` batches in background threads."""
        def load(refs: list[ClipRef]) -> torch.Tensor:
            return torch.stack(list(map(self.clip, refs)))  # [B, N, D]

        futures = [self._pool.submit(load, b) for b in batches[:ahead]]
        for i in range(len(batches)):
            if i + ahead < len(batches):
                futures.append(self._pool.submit(load, batches[i + ahead]))
            yield futures[i].result()
            futures[i] = None

    def videos(self, indices: list[int], ahead: int = 2) -> Iterator[torch.Tensor]:
        """Yield [K, S, N, D] for each video index, prefetching in background threads."""
        futures = [self._pool.submit(self.video, v) for v in indices[:ahead]]
        for i in range(len(indices)):
            if i + ahead < len(indices):
                futures.append(self._pool.submit(self.video, indices[i + ahead]))
            yield futures[i].result()
            futures[i] = None

    def mean_pooled(self) -> np.ndarray:
        """Token-mean of every clip view -> [V, K, S, D], computed in one streaming pass."""
        out = np.empty((len(self), self.clips, self.views, self.width), dtype=np.float32)
        for v, values in enumerate(self.videos(list(range(len(self))))):
            out[v] = values.float().mean(dim=2).numpy()
        return out

    def active_classes(self) -> list[int]:
        """Label indices that occur among the usable videos, in label_names order."""
        return sorted(set(self.labels.tolist()))
