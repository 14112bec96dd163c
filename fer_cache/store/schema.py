"""The store format (DESIGN section 4, schema 1): version, status codes, axes, the arrays and their chunks, token
encodings and the fingerprint. numpy and zarr only, as the whole store package, so that fer_probe can import it
without pulling in the video or encoder code. Opening and reading a store: `handle.Store`.

Axes: V videos, K clips per video, S spatial views, A augmented copies, N tokens (T' x H' x W'), D width.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from fer_cache.errors import StoreError

SCHEMA_VERSION = 1
COMPACT_SCHEMA_VERSION = 2  # schema 1 whose tokens are coordinates on a principal basis (store.basis)
PENDING, DONE, FAILED = 0, 1, 2
STATUS_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed"}
STORED_DTYPES = {"float16": "float16", "bfloat16": "uint16", "int8": "int8",
                 "float32": "float32"}  # bfloat16 kept as its raw bits
REQUIRED_NODES = ("tokens", "videos/id", "videos/label", "videos/subject", "videos/status")
FINGERPRINT_FIELDS = ("encoder", "sampling", "storage", "token_grid")


class StoreFormatError(StoreError):
    """A location that is not a schema-1 store, or a store whose contents are damaged; the message says what to do.
    fer-cache's CLI prints it as it prints any of its errors; fer_probe turns it into its own at its reader."""


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


AXES = {"tokens": ["video", "clip", "view", "token", "width"], "tokens_scale": ["video", "clip", "view", "token"],
        "augmented": ["video", "clip", "copy", "token", "width"], "augmented_scale": ["video", "clip", "copy", "token"],
        "clips/frame_index": ["video", "clip", "frame"]}
TOKEN_ARRAYS = {"tokens": "tokens_scale", "augmented": "augmented_scale"}  # values -> their int8 scales
TOKEN_NODES = (*TOKEN_ARRAYS, *TOKEN_ARRAYS.values())  # every per-video array of token values or scales


@dataclass(frozen=True, kw_only=True)
class Layout:
    """The sizes of a new store: V videos, K clips, S views, N tokens of width D, F frames per clip."""
    videos: int
    clips: int
    views: int
    tokens: int
    width: int
    frames_per_clip: int
    dtype: str = "float16"
    compressor: str = "none"
    shard_by_video: bool = True
    copies: int = 0  # augmented training copies of every clip (the `augmented` array), 0: none


@dataclass(frozen=True, kw_only=True)
class ArraySpec:
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    fill_value: object
    shards: tuple[int, ...] | None = None
    attributes: dict | None = None


def array_specs(layout: Layout) -> dict[str, ArraySpec]:
    """Every per-video array of a store: one (video, clip, view) per token chunk, one video per shard, one video per
    chunk of the small columns (ranks that encode different videos never write the same chunk)."""
    V, K, S, N, D, F = layout.videos, layout.clips, layout.views, layout.tokens, layout.width, layout.frames_per_clip
    by_video = layout.shard_by_video
    specs = {}
    for name, views in (("tokens", S), ("augmented", layout.copies)):
        if not views:
            continue
        specs[name] = ArraySpec(shape=(V, K, views, N, D), chunks=(1, 1, 1, N, D), shards=(1, K, views, N, D)
                                if by_video else None, dtype=STORED_DTYPES[layout.dtype], fill_value=0,
                                attributes={"axes": AXES[name], "storage_dtype": layout.dtype})
        if layout.dtype == "int8":
            scale = TOKEN_ARRAYS[name]
            specs[scale] = ArraySpec(shape=(V, K, views, N), chunks=(1, 1, 1, N), shards=(1, K, views, N)
                                     if by_video else None, dtype="float32", fill_value=0,
                                     attributes={"axes": AXES[scale],
                                                 "meaning": "value = int8 x scale, scale = max|token| / 127"})
    specs |= {"videos/n_frames": ArraySpec(shape=(V,), chunks=(1,), dtype="int32", fill_value=0),
              "videos/n_clips": ArraySpec(shape=(V,), chunks=(1,), dtype="int32", fill_value=0),  # clips written
              "videos/status": ArraySpec(shape=(V,), chunks=(1,), dtype="uint8", fill_value=PENDING),
              "videos/error": ArraySpec(shape=(V,), chunks=(1,), dtype="str", fill_value=""),
              "clips/frame_index": ArraySpec(shape=(V, K, F), chunks=(1, K, F), dtype="int32", fill_value=-1,
                                             attributes={"axes": AXES["clips/frame_index"]})}
    return specs


COLUMNS = {"videos/id": "str", "videos/path": "str", "videos/label": "int16", "videos/subject": "str",
           "videos/split": "str"}  # one chunk each; split only where an adapter knows official splits


def store_attrs(*, dataset: str, label_names: list[str], encoder: dict, sampling: dict, storage: dict,
                token_grid: list[int]) -> dict:
    """The group attributes of a store (section 4), its fingerprint among them."""
    fingerprinted = fingerprint(encoder, sampling, storage, token_grid=token_grid)
    return {"dataset": dataset, "label_names": list(label_names), "encoder": encoder, "sampling": sampling,
            "token_grid": list(token_grid), "storage": storage, "fingerprint": fingerprinted,
            "attributes_digest": attributes_digest(dataset, label_names, fingerprinted)}


def attributes_digest(dataset: str, label_names: list[str], fingerprinted: str) -> str:
    """sha256 over what the fingerprint leaves out (dataset, label_names) and the fingerprint itself: a hand edit of
    any store attribute that a run depends on no longer matches it."""
    payload = {"dataset": dataset, "label_names": list(label_names), "fingerprint": fingerprinted}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def label_names_problem(attrs: dict) -> str | None:
    """What is wrong with a store's label_names, or None: a list of distinct, non-empty names, unchanged since
    extraction where the store has an attributes_digest (older stores do not)."""
    names = attrs.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        return f"label_names must be a list of class names, got {names!r}"
    if len(set(names)) != len(names):
        return f"label_names {names} name a class twice"
    digest = attrs.get("attributes_digest")
    if digest is not None and digest != attributes_digest(attrs.get("dataset"), names, attrs.get("fingerprint")):
        return (f"dataset, label_names or fingerprint were edited after extraction (label_names now {names}); "
                "restore them or extract again")
    return None


def check_schema(group: zarr.Group, location: str) -> None:
    version = group.attrs.get("fer_cache_schema")
    if version is None:
        raise StoreFormatError(f"{location}: not a fer-cache store (no fer_cache_schema attribute)")
    if version not in (SCHEMA_VERSION, COMPACT_SCHEMA_VERSION):
        raise StoreFormatError(f"{location}: store schema {version!r}; this tool reads schemas {SCHEMA_VERSION} and "
                               f"{COMPACT_SCHEMA_VERSION} (re-extract, or use the fer-jepa version that wrote it)")
    from fer_cache.store.basis import NODES
    required = REQUIRED_NODES + (NODES if version == COMPACT_SCHEMA_VERSION else ())
    missing = [node for node in required if node not in group]
    if missing:
        raise StoreFormatError(f"{location}: missing '{missing[0]}'; not a complete fer-cache store")


def read_strings(array) -> list[str]:
    """A string column as plain Python str (zarr's StringDType breaks scikit-learn)."""
    return [str(s) for s in array[:].tolist()]


def clip_counts(group: zarr.Group) -> np.ndarray:
    """Clips stored of each video [V]: videos/n_clips on a dense store (every clip start, so each video its own
    count; the clip axis is sized by the longest), else the clip axis for every video."""
    V, K = group["tokens"].shape[:2]
    if is_dense(group) and "videos/n_clips" in group:
        return group["videos/n_clips"][:].astype(np.int64)
    return np.full(V, K, dtype=np.int64)


def clip_count_problem(group: zarr.Group) -> str | None:
    """What is wrong with a dense store's videos/n_clips, or None: every done video holds 1 to K clips."""
    if not is_dense(group):
        return None
    if "videos/n_clips" not in group:
        return "a store of every clip start without videos/n_clips"
    counts, status = clip_counts(group), group["videos/status"][:]
    K = group["tokens"].shape[1]
    bad = np.flatnonzero((status == DONE) & ((counts < 1) | (counts > K)))
    if len(bad):
        return f"videos/n_clips of video row {int(bad[0])} is {int(counts[bad[0]])}, outside 1..{K}"
    return None


def is_dense(group: zarr.Group) -> bool:
    return dict(group.attrs).get("sampling", {}).get("clips_per_video") == "all"


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


def decode_tokens(stored: np.ndarray, dtype: str, scale: np.ndarray | None = None, *,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Stored values -> float32 (the inverse of encode_tokens), in one pass, into `out` where given (float32, the
    stored shape): the one decoding, for fer-cache's checks and fer_probe's reader alike."""
    if dtype == "bfloat16":
        if out is None:
            return (stored.astype(np.uint32) << 16).view(np.float32)
        bits = out.view(np.uint32)
        np.left_shift(stored, 16, out=bits, dtype=np.uint32)
        return out
    if dtype == "int8":
        return np.multiply(stored, scale[..., None], out=out, dtype=np.float32)
    if out is None:
        return stored.astype(np.float32, copy=False)
    out[...] = stored
    return out


def label_problem(labels: np.ndarray, label_names: list[str]) -> str | None:
    """What is wrong with videos/label against label_names, or None: the one label-range check."""
    if labels.size and labels.max() >= len(label_names):
        return f"videos/label holds index {int(labels.max())} but label_names has {len(label_names)} names"
    if labels.size and labels.min() < -1:
        return f"videos/label holds index {int(labels.min())}; labels are -1 (unknown) or an index into label_names"
    return None
