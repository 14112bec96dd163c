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
STORED_DTYPES = {"float16": "float16", "bfloat16": "uint16", "int8": "int8"}  # bfloat16 kept as its raw bits
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
    """The token arrays of a store, opened once (each group lookup reads metadata from the store)."""

    def __init__(self, group: zarr.Group):
        self.tokens = group["tokens"]
        self.scales = group["tokens_scale"] if "tokens_scale" in group else None


def read_strings(array) -> list[str]:
    """A string column as plain Python str (zarr's StringDType breaks scikit-learn)."""
    return [str(s) for s in array[:].tolist()]


def storage_dtype(group: zarr.Group) -> str:
    return group["tokens"].attrs.get("storage_dtype", group.attrs.get("storage", {}).get("dtype", "float16"))


def encode_tokens(tokens: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [..., N, D] -> stored values (and per-token scales for int8: value = int8 x scale)."""
    if dtype == "float16":
        return np.asarray(tokens, dtype=np.float16), None  # no copy when the encoder gave float16
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


def writes_whole_shards(array, location: str) -> bool:
    """Whether one video's values can be written as one shard file directly: a local store, one shard per video,
    uncompressed little-endian chunks, the index at the end with its crc32c (what fer_cache creates by default)."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
    from zarr.codecs.sharding import ShardingCodecIndexLocation

    codecs = array.metadata.codecs
    if is_url(location) or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    sharding = codecs[0]
    little = BytesCodec(endian="little")
    plain = (little,) if array.dtype.itemsize > 1 else (BytesCodec(endian=None), little)
    return (array.shards == (1, *array.shape[1:]) and len(sharding.codecs) == 1 and sharding.codecs[0] in plain
            and tuple(sharding.index_codecs) == (little, Crc32cCodec())
            and sharding.index_location == ShardingCodecIndexLocation.end
            and array.metadata.chunk_key_encoding.separator == "/")


def write_shard(array, location: str, name: str, *, row: int, values: np.ndarray) -> None:
    """One video's values [K, S, ...] as a complete shard file, written atomically, byte for byte what zarr's
    sharding codec reads: the inner chunks in C order, then the index of (offset, length) pairs and its crc32c.
    Writing through zarr's codec pipeline instead costs 3-6x as long (benchmarks/bench_pipeline.py)."""
    import os

    import google_crc32c

    values = np.ascontiguousarray(values, dtype=array.dtype.newbyteorder("<"))
    inner = tuple(s // c for s, c in zip(array.shards, array.chunks))  # chunks per shard, e.g. (1, K, S, 1, 1)
    count = int(np.prod(inner))
    chunk_bytes = values.nbytes // count
    index = np.empty((count, 2), dtype="<u8")
    index[:, 0] = np.arange(count, dtype=np.uint64) * chunk_bytes
    index[:, 1] = chunk_bytes
    index_bytes = index.tobytes()
    checksum = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()
    path = Path(location) / name / "c" / str(row) / Path(*(["0"] * (array.ndim - 1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    data = memoryview(values.reshape(-1)).cast("B")
    if not write_direct(partial, data):
        with open(partial, "wb") as f:
            f.write(data)
    with open(partial, "ab") as f:
        f.write(index_bytes + checksum)
    os.replace(partial, path)


PAGE = 4096


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array whose data starts on a page boundary, so that a shard can go to disk with O_DIRECT."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + PAGE, dtype=np.uint8)
    offset = (-raw.ctypes.data) % PAGE
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def write_direct(path: Path, data: memoryview) -> bool:
    """Write page-aligned data past the page cache (O_DIRECT): on the project's machine 4x the rate of a buffered
    write, whose cost is allocating and copying into cache pages. False where it does not apply (unaligned data,
    file systems without O_DIRECT): the caller then writes normally."""
    import os
    flag = getattr(os, "O_DIRECT", 0)
    address = np.frombuffer(data, dtype=np.uint8).ctypes.data if len(data) else 0
    if not flag or address % PAGE or len(data) % PAGE:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o644)
    except OSError:
        return False
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
