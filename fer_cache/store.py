"""The schema-1 Zarr store (DESIGN section 4): create, open, check, write one video, commit its status.

Axes: V videos, K clips per video, S spatial views, N tokens (T' x H' x W'), D width, F frames per clip.
"""

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from fer_cache.errors import StoreError, StoreMismatchError

SCHEMA_VERSION = 1
PENDING, DONE, FAILED = 0, 1, 2
STORED_DTYPES = {"float16": "float16", "bfloat16": "uint16", "int8": "int8"}  # bfloat16 kept as its raw bits


@dataclass(frozen=True)
class Layout:
    videos: int
    clips: int
    views: int
    tokens: int
    width: int
    frames_per_clip: int
    dtype: str = "float16"
    compressor: str = "zstd"
    shard_by_video: bool = True


def is_url(store: str) -> bool:
    return "://" in str(store)


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def fingerprint(encoder: dict, sampling: dict, storage: dict, token_grid: list[int]) -> str:
    """What makes two extractions interchangeable; a store of another fingerprint is never appended to."""
    payload = {"encoder": encoder, "sampling": sampling, "storage": storage, "token_grid": list(token_grid)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def compressors_for(name: str):
    if name == "zstd":
        return (zarr.codecs.ZstdCodec(level=3),)
    if name == "blosc":
        return (zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=zarr.codecs.BloscShuffle.bitshuffle),)
    return None


def software_versions() -> dict:
    import av
    import torch

    from fer_cache import __version__
    return {"fer_cache": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "zarr": zarr.__version__, "av": av.__version__, "numpy": np.__version__}


def open_group(store: str | Path, mode: str) -> zarr.Group:
    """Open a local path or an fsspec URL; a missing or non-store location is a StoreError."""
    location = str(store)
    if not is_url(location) and mode == "r" and not Path(location).exists():
        raise StoreError(f"{location}: no such store; run `fer-cache extract` first or check the path")
    try:
        return zarr.open_group(location, mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            json.JSONDecodeError, ValueError) as exc:
        raise StoreError(f"{location}: not a Zarr store ({type(exc).__name__}); point at a STORE.zarr "
                         "written by fer-cache extract") from exc


def check_schema(group: zarr.Group, location: str) -> None:
    version = group.attrs.get("fer_cache_schema")
    if version is None:
        raise StoreError(f"{location}: not a fer-cache store (no fer_cache_schema attribute)")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{location}: store schema {version}, this tool reads schema {SCHEMA_VERSION}")


def is_replaceable(path: Path) -> bool:
    """Only an empty folder or a fer-cache store may be replaced; anything else could be somebody's data."""
    if path.is_dir() and not any(path.iterdir()):
        return True
    try:
        return zarr.open_group(str(path), mode="r").attrs.get("fer_cache_schema") is not None
    except (OSError, ValueError, json.JSONDecodeError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError):  # not a Zarr group at all
        return False


def create_store(store: str | Path, layout: Layout, videos: list, attrs: dict) -> zarr.Group:
    """A new, all-pending store for `videos` (VideoItem-like: id, path, label, subject).

    A local store is built beside its destination and renamed into place, so an interrupted creation never leaves
    a half-made store behind (nor removes the old one before the new one is complete)."""
    if is_url(str(store)):
        return _fill_store(zarr.open_group(str(store), mode="w"), layout, videos, attrs)
    final = Path(store)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by an interrupted creation
    _fill_store(zarr.open_group(str(partial), mode="w"), layout, videos, attrs)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return zarr.open_group(str(final), mode="r+")


def _fill_store(group: zarr.Group, layout: Layout, videos: list, attrs: dict) -> zarr.Group:
    V, K, S, N, D, F = layout.videos, layout.clips, layout.views, layout.tokens, layout.width, layout.frames_per_clip
    compressors = compressors_for(layout.compressor)
    token_chunks = (1, 1, 1, N, D)
    shards = (1, K, S, N, D) if layout.shard_by_video else None
    group.create_array("tokens", shape=(V, K, S, N, D), chunks=token_chunks, shards=shards,
                       dtype=STORED_DTYPES[layout.dtype], compressors=compressors, fill_value=0,
                       attributes={"axes": ["video", "clip", "view", "token", "width"],
                                   "storage_dtype": layout.dtype})
    if layout.dtype == "int8":
        group.create_array("tokens_scale", shape=(V, K, S, N), chunks=(1, 1, 1, N),
                           shards=(1, K, S, N) if layout.shard_by_video else None, dtype="float32",
                           compressors=compressors, fill_value=0,
                           attributes={"axes": ["video", "clip", "view", "token"],
                                       "meaning": "value = int8 x scale, scale = max|token| / 127"})
    whole = (max(V, 1),)
    write_column(group, "videos/id", [v.id for v in videos], str, whole)
    write_column(group, "videos/path", [v.path for v in videos], str, whole)
    write_column(group, "videos/label", [v.label for v in videos], "int16", whole)
    write_column(group, "videos/subject", [v.subject for v in videos], str, whole)
    group.create_array("videos/n_frames", shape=(V,), chunks=(1,), dtype="int32", fill_value=0)
    group.create_array("videos/status", shape=(V,), chunks=(1,), dtype="uint8", fill_value=PENDING)
    group.create_array("videos/error", shape=(V,), chunks=(1,), dtype=str, fill_value="")
    group.create_array("clips/frame_index", shape=(V, K, F), chunks=(1, K, F), dtype="int32", fill_value=-1,
                       attributes={"axes": ["video", "clip", "frame"]})
    group.attrs.update(attrs | {"fer_cache_schema": SCHEMA_VERSION})
    return group


def write_column(group: zarr.Group, name: str, values: list, dtype, chunks: tuple[int]) -> None:
    array = group.create_array(name, shape=(len(values),), chunks=chunks, dtype=dtype,
                               fill_value="" if dtype is str else 0)
    if values:
        array[:] = np.array(values, dtype=np.dtypes.StringDType() if dtype is str else dtype)


def encode_tokens(tokens: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [..., N, D] -> stored values (and per-token scales for int8)."""
    if dtype == "float16":
        return tokens.astype(np.float16), None
    if dtype == "bfloat16":
        bits = np.ascontiguousarray(tokens, dtype=np.float32).view(np.uint32)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
        return (rounded >> 16).astype(np.uint16), None
    scale = np.abs(tokens).max(axis=-1) / 127.0  # [..., N]
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.round(tokens / scale[..., None]), -127, 127).astype(np.int8), scale


def decode_tokens(stored: np.ndarray, dtype: str, scale: np.ndarray | None = None) -> np.ndarray:
    """Stored values -> float32 (the inverse of encode_tokens)."""
    if dtype == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    if dtype == "int8":
        return stored.astype(np.float32) * scale[..., None]
    return stored.astype(np.float32)


def write_video(group: zarr.Group, index: int, tokens: np.ndarray, frame_index: np.ndarray, n_frames: int) -> None:
    """Write one video's tokens [K, S, N, D] and clip indices, then (last) mark it done."""
    dtype = group["tokens"].attrs.get("storage_dtype", "float16")
    stored, scale = encode_tokens(tokens, dtype)
    group["tokens"][index] = stored
    if scale is not None:
        group["tokens_scale"][index] = scale
    group["clips/frame_index"][index] = frame_index
    group["videos/n_frames"][index] = n_frames
    group["videos/error"][index] = ""
    group["videos/status"][index] = DONE  # the commit point: only now is the video done


def mark_failed(group: zarr.Group, index: int, reason: str) -> None:
    group["videos/error"][index] = reason.replace("\n", " ")[:500]
    group["videos/status"][index] = FAILED


def read_strings(array) -> list[str]:
    return [str(s) for s in array[:].tolist()]


class StoreLock:
    """An exclusive lock file in a local store, so a second extraction refuses instead of interleaving writes."""

    def __init__(self, store: str | Path):
        # beside the store, not inside it: --overwrite clears the store's folder
        self.path = None if is_url(str(store)) else Path(str(store).rstrip("/") + ".lock")
        self.handle = None

    def __enter__(self):
        if self.path is None:
            return self  # object stores: ranks write disjoint videos; no shared lock there
        import fcntl
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot write the store at {str(self.path)[:-5]}: {exc.strerror or exc}; choose a "
                             "writable --out") from exc
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "another process"
            self.handle.close()
            raise StoreError(f"{str(self.path)[:-5]}: another extraction ({owner}) is writing this store; wait for "
                             "it to finish, then rerun to resume") from exc
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc_info):
        if self.handle is not None:
            import fcntl
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def ensure_compatible(group: zarr.Group, location: str, expected_fingerprint: str, videos: list) -> None:
    """A store is resumed only for the same extraction over the same video list."""
    check_schema(group, location)
    found = group.attrs.get("fingerprint")
    if found != expected_fingerprint:
        raise StoreMismatchError(f"{location}: store fingerprint {found} differs from this extraction's "
                                 f"{expected_fingerprint}; use --overwrite to replace it or choose another --out")
    ids = read_strings(group["videos/id"])
    if ids != [v.id for v in videos]:
        raise StoreMismatchError(f"{location}: store holds {len(ids)} videos, this run selects {len(videos)} "
                                 "different ones (another --limit or dataset?); use --overwrite or another --out")
