"""The one owner of the store format (DESIGN section 4, schema 1): version, status codes, token encodings, the
fingerprint, opening and checking a store, and reading one video's tokens. numpy and zarr only, so that
fer_probe can import it without pulling in the video or encoder code.

Axes: V videos, K clips per video, S spatial views, N tokens (T' x H' x W'), D width.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import zarr

SCHEMA_VERSION = 1
PENDING, DONE, FAILED = 0, 1, 2
STATUS_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed"}
STORED_DTYPES = {"float16": "float16", "bfloat16": "uint16", "int8": "int8",
                 "float32": "float32"}  # bfloat16 kept as its raw bits
REQUIRED_NODES = ("tokens", "videos/id", "videos/label", "videos/subject", "videos/status")
FINGERPRINT_FIELDS = ("encoder", "sampling", "storage", "token_grid")


class StoreFormatError(Exception):
    """A location that is not a schema-1 store, or a store whose contents are damaged; the message says what to do.
    Each package turns it into its own error family at its boundary."""


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def fingerprint(encoder: dict, sampling: dict, storage: dict, *, token_grid: list[int]) -> str:
    """What makes two extractions interchangeable: sha256 of the canonical JSON of these four attributes."""
    payload = {"encoder": encoder, "sampling": sampling, "storage": storage, "token_grid": list(token_grid)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """The fields that make two fingerprints differ, as 'sampling.clips_per_video 4 -> 8'."""
    changes = []

    def walk(a, b, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        elif canonical_json(a) != canonical_json(b):
            changes.append(f"{prefix} {json.dumps(a)} -> {json.dumps(b)}")

    for key in FINGERPRINT_FIELDS:
        walk(old.get(key), new.get(key), key)
    return changes


def open_store(location: str | Path, mode: str = "r") -> zarr.Group:
    """Open a schema-1 store (local path or fsspec URL) and check its version and required nodes."""
    location = str(location)
    if not is_url(location) and not Path(location).exists():
        raise StoreFormatError(f"{location}: no such store; check the path or run `fer-cache extract` first")
    try:
        group = zarr.open_group(location, mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            json.JSONDecodeError, ValueError) as exc:
        raise StoreFormatError(f"{location}: not a Zarr store written by fer-cache ({type(exc).__name__}); point "
                               "at a STORE.zarr written by fer-cache extract") from exc
    check_schema(group, location)
    return group


def check_schema(group: zarr.Group, location: str) -> None:
    version = group.attrs.get("fer_cache_schema")
    if version is None:
        raise StoreFormatError(f"{location}: not a fer-cache store (no fer_cache_schema attribute)")
    if version != SCHEMA_VERSION:
        raise StoreFormatError(f"{location}: store schema {version!r}; this tool reads schema {SCHEMA_VERSION} "
                               "(re-extract, or use the fer-jepa version that wrote it)")
    missing = [node for node in REQUIRED_NODES if node not in group]
    if missing:
        raise StoreFormatError(f"{location}: missing '{missing[0]}'; not a complete fer-cache store")


class TokenArrays:
    """The token arrays of a store, opened once (each group lookup reads metadata from the store); with the store's
    location, token reads of the default layout go straight to the shard files (fer_cache.shards)."""

    def __init__(self, group: zarr.Group, location: str | None = None):
        from fer_cache.store.shards import ShardReader  # shards builds on this module

        self.tokens = group["tokens"]
        self.scales = group["tokens_scale"] if "tokens_scale" in group else None
        direct = location is not None and ShardReader.applies(self.tokens, location)
        self.direct = ShardReader(self.tokens, location) if direct else None


def read_strings(array) -> list[str]:
    """A string column as plain Python str (zarr's StringDType breaks scikit-learn)."""
    return [str(s) for s in array[:].tolist()]


def padded_videos(group: zarr.Group, rows=None) -> tuple[int, int, int]:
    """(videos shorter than one clip span, of them mostly padding, the span) among done videos: such clips repeat
    their last frame, which a reader of the results should know."""
    sampling = dict(group.attrs).get("sampling", {})
    frames, step = int(sampling.get("frames_per_clip", 1)), int(sampling.get("frame_step", 1))
    span = (frames - 1) * step + 1
    n_frames, status = group["videos/n_frames"][:], group["videos/status"][:]
    if rows is not None:
        n_frames, status = n_frames[rows], status[rows]
    n_frames = n_frames[status == DONE]
    short = (n_frames > 0) & (n_frames < span)
    real = np.minimum(frames, -(-n_frames // step))  # distinct decoded frames in a clip
    return int(short.sum()), int((short & (2 * real < frames)).sum()), span


def padding_note(short: int, mostly: int, span: int) -> str | None:
    if not short:
        return None
    return (f"{short} videos are shorter than one clip span ({span} frames): their clips repeat the last frame "
            f"({mostly} of them mostly padding)")


def storage_dtype(group: zarr.Group) -> str:
    return group["tokens"].attrs.get("storage_dtype", group.attrs.get("storage", {}).get("dtype", "float16"))


def encode_tokens(tokens: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [..., N, D] -> stored values (and per-token scales for int8: value = int8 x scale)."""
    if dtype in ("float16", "float32"):
        return np.asarray(tokens, dtype=dtype), None  # no copy when the encoder gave that dtype
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


def read_stored(arrays: "TokenArrays", row: int, video_id: str, *, location: str, selection: tuple = ()) \
        -> tuple[np.ndarray, np.ndarray | None]:
    """One video's stored token values (and int8 scales), all of them or `selection` within [K, S]; a chunk that
    does not decode names the video and says how to repair it."""
    try:
        stored = arrays.direct.read(row, selection) if arrays.direct is not None else None
        if stored is None:
            stored = arrays.tokens[(row, *selection)]
        scale = arrays.scales[(row, *selection)] if arrays.scales is not None else None
    except Exception as exc:
        raise StoreFormatError(f"{location}: the tokens of video {video_id} do not decode ({type(exc).__name__}); "
                               "delete its chunk and rerun `fer-cache extract` on this store to re-encode it") from exc
    return stored, scale


def chunk_counts(group: zarr.Group, location: str, array: str) -> dict[int, int] | None:
    """Stored objects of a per-video array per video row, from one listing (None where it cannot be listed)."""
    if not is_url(location):
        base = Path(location) / array / "c"
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
        async for key in group.store.list_prefix(f"{array}/c/"):
            row = int(key.split("/")[2])
            counts[row] = counts.get(row, 0) + 1
        return counts
    try:
        return sync(listing())
    except (NotImplementedError, OSError):  # a store that cannot list keys skips this one check
        return None


def expected_chunks(array) -> int:
    """Objects a finished video has in a per-video array: one shard, or one chunk per (clip, view)."""
    if array.shards is not None:
        return 1
    return int(np.prod(array.shape[1:3]))


def done_rows_missing_tokens(group: zarr.Group, location: str, rows: np.ndarray) -> list[int] | None:
    """Rows among `rows` (done videos) whose token chunks (or int8 scales) are not all in the store: they would
    read back as zeros. None where the store cannot be listed."""
    missing: set[int] = set()
    for name in ("tokens", "tokens_scale"):
        if name not in group:
            continue
        counts = chunk_counts(group, location, name)
        if counts is None:
            return None
        needed = expected_chunks(group[name])
        missing |= {int(r) for r in rows if counts.get(int(r), 0) < needed}
    return sorted(missing)


def reuse_freed_memory() -> None:
    """Token chunks are ~12 MB. glibc serves such blocks with fresh mmap pages and returns them on free, so every
    chunk read or written pays page faults for all its bytes; keeping freed memory for reuse made sharded writes
    3-4x and reads about 2x faster on the project's machine (benchmarks/bench_store.py). Linux glibc only."""
    import ctypes
    import ctypes.util
    import sys
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve large blocks from the heap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep up to 2 GiB of freed heap for reuse
