"""One opened store: its Zarr group and where it lives, and the questions asked of it (is it a schema-1 store, what
are one video's stored tokens, which done videos lost their chunks). Token reads of the default layout go straight
to the shard files (`shards.ShardReader`); everything else goes through zarr.

Axes: V videos, K clips per video, S spatial views, N tokens, D width.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from fer_cache.store import schema
from fer_cache.store.basis import Basis
from fer_cache.store.schema import StoreFormatError
from fer_cache.store.shards import ShardReader, writes_whole_shards


@dataclass(frozen=True)
class Manifest:
    """What a store says of its videos, read once and checked: every video row's id, label, subject, official
    split and status, with the label names the labels index (-1: unknown)."""
    ids: list[str]  # [V]
    labels: np.ndarray  # [V] int64
    subjects: list[str]  # [V]
    splits: list[str] | None  # [V] official split membership, where the adapter knows one
    status: np.ndarray  # [V] uint8: schema.PENDING, DONE, FAILED
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class Store:
    """A schema-1 store, opened once: `Store.open(location)`. With direct=False every read and write goes through
    zarr (verify does, to check the fast path independently)."""

    def __init__(self, group: zarr.Group, location: str | Path, *, direct: bool = True):
        self.group, self.location = group, str(location)
        self.arrays = {name: (group[name], group[scale] if scale in group else None)  # opened once, not per read
                       for name, scale in schema.TOKEN_ARRAYS.items() if name in group}
        self.tokens, self.scales = self.arrays["tokens"]  # values [V, K, S, N, D] and int8 scales (or None)
        self.copies = self.arrays["augmented"][0].shape[2] if "augmented" in self.arrays else 0  # copies per clip
        self.dense = schema.is_dense(group)  # every clip start: each video its own clip count (clip_counts)
        self.dtype = schema.storage_dtype(group)
        compact = group.attrs.get("fer_cache_schema") == schema.COMPACT_SCHEMA_VERSION
        self.basis = Basis.read(group) if compact else None  # tokens are coordinates on it (compact stores)
        if self.basis is not None and not self.basis.consistent(self.tokens.shape[-1]):
            raise StoreFormatError(f"{self.location}: basis/mean {self.basis.mean.shape}, basis/components "
                                   f"{self.basis.components.shape} and tokens of width {self.tokens.shape[-1]} do not "
                                   "fit together; the compact store is damaged (compact it again)")
        local = direct and not schema.is_url(self.location)

        def shard_reader(name: str) -> ShardReader | None:  # reads straight from the array's shard files, or None
            applies = local and name in group and ShardReader.applies(group[name], self.location)
            return ShardReader(group[name], self.location) if applies else None
        self.direct, self.direct_copies = shard_reader("tokens"), shard_reader("augmented")
        self.direct_scales = {name: reader for name, scale in schema.TOKEN_ARRAYS.items()  # int8 scales, directly too
                              if (reader := shard_reader(scale)) is not None}
        self.whole_shards = {name: local and writes_whole_shards(group[name], self.location)
                             for name in schema.TOKEN_NODES if name in group}  # decided once, not per video

    @classmethod
    def open(cls, location: str | Path, mode: str = "r", *, direct: bool = True) -> "Store":
        """Open a store (local path or fsspec URL), checking its version and required nodes."""
        location = str(location)
        if not schema.is_url(location) and not Path(location).exists():
            raise StoreFormatError(f"{location}: no such store; check the path or run `fer-cache extract` first")
        try:
            group = zarr.open_group(location, mode=mode)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
                json.JSONDecodeError, ValueError) as exc:
            raise StoreFormatError(f"{location}: not a Zarr store written by fer-cache ({type(exc).__name__}); "
                                   "point at a STORE.zarr written by fer-cache extract") from exc
        schema.check_schema(group, location)
        return cls(group, location, direct=direct)

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    def manifest(self) -> Manifest:
        """The videos' ids, labels, subjects, splits and statuses; labels outside label_names are refused."""
        labels = self.group["videos/label"][:].astype(np.int64)
        problem = schema.label_names_problem(self.attrs)
        label_names = list(self.attrs.get("label_names", []))
        problem = problem or schema.label_problem(labels, label_names) or schema.clip_count_problem(self.group)
        if problem:
            raise StoreFormatError(f"{self.location}: {problem}; the store is inconsistent (run `fer-cache verify`)")
        return Manifest(ids=self.strings("videos/id"), labels=labels, subjects=self.strings("videos/subject"),
                        splits=self.strings("videos/split") if "videos/split" in self.group else None,
                        status=self.group["videos/status"][:], label_names=label_names)

    def strings(self, name: str) -> list[str]:
        return schema.read_strings(self.group[name])

    def read(self, row: int, video_id: str, selection: tuple = (), *, out: np.ndarray | None = None,
             array: str = "tokens") -> tuple[np.ndarray, np.ndarray | None]:
        """One video's stored token values (and int8 scales), all [K, S, N, D] or `selection` within [K, S] (of
        `array`: tokens, or augmented [K, A, N, D]), into `out` where given (the stored dtype, C-contiguous); a chunk
        that does not decode names the video and says how to repair it."""
        values, scales = self.arrays[array]
        try:
            direct = self.direct if array == "tokens" else self.direct_copies
            stored = direct.read(row, selection, out) if direct is not None else None
            if stored is None:
                stored = values[(row, *selection)]
                if out is not None:
                    target = out.reshape(stored.shape)
                    target[...] = stored
                    stored = target
            scale = None
            if scales is not None:  # straight from the shard where the values were (zarr's read: 1-2 ms a clip)
                scale_reader = self.direct_scales.get(array) if direct is not None else None
                scale = scale_reader.read(row, selection) if scale_reader is not None else None
                scale = scales[(row, *selection)] if scale is None else scale
        except Exception as exc:  # any decoding failure of a chunk means the same to the user
            raise StoreFormatError(f"{self.location}: the {array} of video {video_id} do not decode "
                                   f"({type(exc).__name__}, in {self.chunk_folder(row, array)}); `fer-cache verify "
                                   f"{self.location} --repair`, then rerun the extraction to re-encode it") from exc
        return stored, scale

    def chunk_folder(self, row: int, array: str = "tokens") -> str:
        """Where video `row`'s token chunks live (its shard file, or its clip views' chunks, are under it)."""
        return f"{self.location.rstrip('/')}/{array}/c/{row}"

    def lost_chunks(self, rows: np.ndarray) -> list[int] | None:
        """Rows among `rows` (done videos) whose token chunks (or int8 scales) are not all in the store: they would
        read back as zeros. None where the store cannot be listed."""
        missing: set[int] = set()
        clips = schema.clip_counts(self.group)
        for name in schema.TOKEN_NODES:
            if name not in self.group:
                continue
            counts = self.chunk_counts(name)
            if counts is None:
                return None
            array = self.group[name]
            for r in rows:  # a shard, or the video's clips x S chunks
                needed = 1 if array.shards is not None else int(clips[r]) * array.shape[2]
                if counts.get(int(r), 0) < needed:
                    missing.add(int(r))
        return sorted(missing)

    def chunk_counts(self, array: str) -> dict[int, int] | None:
        """Stored objects of a per-video array per video row, from one listing (None where it cannot be listed)."""
        if not schema.is_url(self.location):
            base = Path(self.location) / array / "c"
            if not base.is_dir():
                return {}
            counts = {}
            for entry in os.scandir(base):
                if entry.name.isdigit():
                    counts[int(entry.name)] = sum(len(files) for _, _, files in os.walk(entry.path))
            return counts
        from zarr.core.sync import sync

        async def listing() -> dict[int, int]:
            counts: dict[int, int] = {}
            async for key in self.group.store.list_prefix(f"{array}/c/"):
                row = int(key.split("/")[2])
                counts[row] = counts.get(row, 0) + 1
            return counts
        try:
            return sync(listing())
        except (NotImplementedError, OSError):  # a store that cannot list keys skips this one check
            return None
