"""Writing a store (DESIGN section 4): create or grow it, prepare it for an extraction, write one video, commit its
status, and lock it against a second writer. The format itself (arrays, codes, encodings) is `schema`'s.

Axes: V videos, K clips per video, S spatial views, N tokens (T' x H' x W'), D width, F frames per clip.
"""

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from fer_cache.errors import StoreError, StoreMismatchError, no_space
from fer_cache.store import schema, shards
from fer_cache.store.basis import Basis
from fer_cache.store.handle import Store
from fer_cache.store.schema import Layout


def compressors_for(name: str):
    if name == "zstd":
        return (zarr.codecs.ZstdCodec(level=3),)
    if name == "blosc":
        return (zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=zarr.codecs.BloscShuffle.bitshuffle),)
    return None


def is_replaceable(path: Path) -> bool:
    """Only an empty folder or a fer-cache store may be replaced; anything else could be somebody's data."""
    if path.is_dir() and not any(path.iterdir()):
        return True
    try:
        return zarr.open_group(str(path), mode="r").attrs.get("fer_cache_schema") is not None
    except (OSError, ValueError, json.JSONDecodeError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError):  # not a Zarr group at all
        return False


def create_store(location: str | Path, layout: Layout, videos: list, *, attrs: dict, basis: Basis | None = None) \
        -> Store:
    """A new, all-pending store for `videos` (VideoItem-like: id, path, label, subject[, split]); with a basis, a
    compact store (schema 2) whose tokens are coordinates on it (layout.width is then its rank).

    A local store is built beside its destination and renamed into place, so an interrupted creation never leaves
    a half-made store behind (nor removes the old one before the new one is complete)."""
    if schema.is_url(location):
        return Store(fill_store(zarr.open_group(str(location), mode="w"), layout, videos, attrs=attrs, basis=basis),
                     location)
    final = Path(location)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by an interrupted creation
    fill_store(zarr.open_group(str(partial), mode="w"), layout, videos, attrs=attrs, basis=basis)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return Store(zarr.open_group(str(final), mode="r+"), final)


def fill_store(group: zarr.Group, layout: Layout, videos: list, *, attrs: dict, basis: Basis | None = None) \
        -> zarr.Group:
    compressors = compressors_for(layout.compressor)
    for name, spec in schema.array_specs(layout).items():
        group.create_array(name, shape=spec.shape, chunks=spec.chunks, shards=spec.shards,
                           dtype=str if spec.dtype == "str" else spec.dtype, fill_value=spec.fill_value,
                           compressors=(*(compressors or ()), zarr.codecs.Crc32cCodec())  # a checksum per chunk
                           if name.startswith("tokens") else "auto",
                           attributes=spec.attributes)
    whole = (max(layout.videos, 1),)
    for name, dtype in schema.COLUMNS.items():
        field = name.split("/")[1]
        if name == "videos/split" and not any(getattr(v, "split", "") for v in videos):
            continue  # official split membership (e.g. "test:3"), only where an adapter knows it
        write_column(group, name, [getattr(v, field) for v in videos], dtype=str if dtype == "str" else dtype,
                     chunks=whole)
    if basis is not None:
        basis.write(group)
    version = schema.SCHEMA_VERSION if basis is None else schema.COMPACT_SCHEMA_VERSION
    group.attrs.update(attrs | {"fer_cache_schema": version})  # last: a store without it is not a store yet
    return group


def write_column(group: zarr.Group, name: str, values: list, *, dtype, chunks: tuple[int]) -> None:
    array = group.create_array(name, shape=(len(values),), chunks=chunks, dtype=dtype,
                               fill_value="" if dtype is str else 0)
    if values:
        array[:] = np.array(values, dtype=np.dtypes.StringDType() if dtype is str else dtype)


def write_video(store: Store, index: int, tokens: np.ndarray, *, frame_index: np.ndarray, n_frames: int) -> None:
    """Write one video's tokens [K, S (+ A copies), N, D] and clip indices [K, T], then (last) mark it done; a
    compact store keeps their coordinates on its basis, a dense store's shorter video fewer clips than its clip
    axis. In the default layout of a local store, whole shards go straight to their files (shards.write_shard)."""
    group = store.group
    if store.basis is not None:
        if tokens.shape[-1] != store.basis.width:
            raise StoreError(f"{store.location}: tokens of width {tokens.shape[-1]} for video row {index}, but the "
                             f"store's basis takes tokens of width {store.basis.width}")
        tokens = store.basis.project(tokens)  # [K, S (+ A), N, R]
    K, S = store.tokens.shape[1:3]
    clips = tokens.shape[0]  # a shard file would take any bytes: check here
    if tokens.shape[1:] != (S + store.copies, *store.tokens.shape[3:]) or not (clips == K or store.dense and clips):
        raise StoreError(f"{store.location}: tokens of shape {tuple(tokens.shape)} for video row {index}, but the "
                         f"store holds {(K, S + store.copies, *store.tokens.shape[3:])} per video")
    parts = {"tokens": tokens[:, :S]} | ({"augmented": tokens[:, S:]} if store.copies else {})
    for array, part in parts.items():
        stored, scale = schema.encode_tokens(part, store.dtype)
        for name, values in ((array, stored), (schema.TOKEN_ARRAYS[array], scale)):
            if values is None:
                continue
            if store.whole_shards.get(name):
                shards.write_shard(group[name], store.location, name, row=index, values=values)
            else:
                group[name][index, :clips] = values
    group["clips/frame_index"][index] = np.pad(frame_index, ((0, K - clips), (0, 0)), constant_values=-1)
    if "videos/n_clips" in group:
        group["videos/n_clips"][index] = clips
    group["videos/n_frames"][index] = n_frames
    group["videos/error"][index] = ""
    group["videos/status"][index] = schema.DONE  # the commit point: only now is the video done


def mark_failed(store: Store, index: int, reason: str) -> None:
    store.group["videos/error"][index] = reason.replace("\n", " ")[:500]
    store.group["videos/status"][index] = schema.FAILED


def video_buffer(store: Store, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Memory for one video's tokens that can go to its shard file with O_DIRECT (page-aligned; laid out as its
    checksummed shard where the store writes chunk checksums and the tokens arrive in the stored dtype)."""
    tokens = store.tokens
    if (store.whole_shards.get("tokens") and store.basis is None and np.dtype(dtype) == tokens.dtype
            and shards.chunk_checksums(tokens) and not store.copies):  # copies: tokens and augmented split it
        return shards.chunked_empty(shape, dtype)
    return shards.aligned_empty(shape, dtype)


class StoreLock:
    """An exclusive lock file beside a local store, so a second extraction refuses instead of interleaving writes;
    removed when the holder ends."""

    def __init__(self, store: str | Path):
        # beside the store, not inside it: --overwrite clears the store's folder
        self.path = None if schema.is_url(store) else Path(str(store).rstrip("/") + ".lock")
        self.handle = None

    def __enter__(self):
        if self.path is None:
            return self  # object stores: ranks write disjoint videos; no shared lock there
        import fcntl
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a+")
        except OSError as exc:
            advice = "free space or choose another output" if no_space(exc) else "choose a writable output"
            raise StoreError(f"cannot write the store at {str(self.path)[:-5]}: {exc.strerror or exc}; {advice}") \
                from exc
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(self.handle.fileno()).st_ino != os.stat(self.path).st_ino:
                raise BlockingIOError  # locked a file that its previous holder removed meanwhile
        except (BlockingIOError, FileNotFoundError) as exc:
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
            self.path.unlink(missing_ok=True)  # while still holding it: a waiting opener then sees another inode
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


@dataclass(kw_only=True)
class Reconciled:
    """How the dataset's videos land in an existing store."""
    rows: list[int]  # store row of each requested video
    added: int = 0  # new videos appended to the store
    relabelled: int = 0  # existing videos whose label, subject or path followed the dataset
    repaired: int = 0  # done videos whose token chunks were gone: set back to pending, to be re-encoded


def reconcile(store: Store, attrs: dict, *, videos: list) -> Reconciled:
    """Make an existing store ready for this extraction: same fingerprint and label vocabulary (else refuse, naming
    what differs), new videos appended (encoded ones are kept), metadata updated, lost chunks queued again."""
    group, location = store.group, store.location
    schema.check_schema(group, location)
    if group.attrs.get("fingerprint") != attrs["fingerprint"]:
        changes = schema.fingerprint_changes(dict(group.attrs), attrs) or ["the fingerprint attribute itself"]
        raise StoreMismatchError(f"{location} was extracted differently ({'; '.join(changes[:4])}); replace it "
                                 "(overwrite) or choose another output")
    if list(group.attrs.get("label_names", [])) != list(attrs["label_names"]):
        raise StoreMismatchError(f"{location}: its classes {group.attrs.get('label_names')} differ from the "
                                 f"dataset's {list(attrs['label_names'])}; replace it (overwrite) or choose another "
                                 "output")
    ids = store.strings("videos/id")
    position = {video_id: row for row, video_id in enumerate(ids)}
    new = [v for v in videos if v.id not in position]
    if new or any(a.shape[0] != len(ids) for a in per_video_arrays(group)):
        grow(group, ids, new)
        position |= {v.id: len(ids) + i for i, v in enumerate(new)}
    result = Reconciled(rows=[position[v.id] for v in videos], added=len(new))
    result.relabelled = update_metadata(group, videos, result.rows)
    shards.remove_partials(location)  # a killed run's half-written shards (no video is done by them)
    status = group["videos/status"][:]
    lost = store.lost_chunks(np.flatnonzero(status == schema.DONE)) or []
    for row in lost:
        group["videos/status"][row] = schema.PENDING
    result.repaired = len(lost)
    return result


def per_video_arrays(group: zarr.Group) -> list:
    names = [*schema.TOKEN_NODES, "videos/n_frames", "videos/n_clips", "videos/status", "videos/error",
             "clips/frame_index",
             "videos/path", "videos/label", "videos/subject", "videos/split"]
    return [group[name] for name in names if name in group]


def grow(group: zarr.Group, ids: list[str], new: list) -> None:
    """Append `new` videos as pending rows. The id column is written last, so an interrupted growth is completed by
    the next run (resizing to the same length is idempotent)."""
    total = len(ids) + len(new)
    for array in per_video_arrays(group):
        array.resize((total, *array.shape[1:]))
    if new:
        rows = slice(len(ids), total)
        group["videos/path"][rows] = np.array([v.path for v in new], dtype=np.dtypes.StringDType())
        group["videos/label"][rows] = np.array([v.label for v in new], dtype="int16")
        group["videos/subject"][rows] = np.array([v.subject for v in new], dtype=np.dtypes.StringDType())
        if "videos/split" in group:
            group["videos/split"][rows] = np.array([v.split for v in new], dtype=np.dtypes.StringDType())
    id_column = group["videos/id"]
    id_column.resize((total,))
    id_column[:] = np.array(ids + [v.id for v in new], dtype=np.dtypes.StringDType())


def update_metadata(group: zarr.Group, videos: list, rows: list[int]) -> int:
    """Labels, subjects, paths and splits follow the dataset (they are not encoded); returns how many videos
    changed."""
    names = [n for n in ("label", "subject", "path", "split") if f"videos/{n}" in group]
    columns = {name: group[f"videos/{name}"][:] for name in names}
    changed = 0
    for video, row in zip(videos, rows):
        now = {name: getattr(video, name) for name in names}
        if any(str(columns[k][row]) != str(v) for k, v in now.items()):
            changed += 1
            for name, value in now.items():
                columns[name][row] = value
    if changed:
        for name, values in columns.items():
            group[f"videos/{name}"][:] = values
    return changed


def prepare_for_extraction(location: str, layout: Layout, videos: list, *, attrs: dict, overwrite: bool,
                           rank: int = 0, wait: Callable[[], None] = lambda: None, basis: Basis | None = None) \
        -> tuple[Store, Reconciled]:
    """Rank 0 creates the store (replacing it with overwrite; compact with a basis), or reconciles an existing one
    with the dataset (growing it); the other ranks open it once it is ready (`wait` is the ranks' barrier)."""
    exists = (Path(location) / "zarr.json").exists() if not schema.is_url(location) else url_exists(location)
    reconciled = Reconciled(rows=list(range(len(videos))))
    if rank == 0:
        if exists and not overwrite:
            store = Store.open(location, mode="r+")
            reconciled = reconcile(store, attrs, videos=videos)
        else:
            if not schema.is_url(location) and Path(location).exists() and not is_replaceable(Path(location)):
                raise StoreError(f"{location} exists and is not a fer-cache store; choose another output (nothing "
                                 "was changed there)")
            try:
                store = create_store(location, layout, videos, attrs=attrs, basis=basis)
            except OSError as exc:
                advice = "free space or choose another output" if no_space(exc) else "choose a writable output"
                raise StoreError(f"cannot write the store at {location}: {exc.strerror or exc}; {advice}") from exc
    wait()
    if rank != 0:
        store = Store.open(location, mode="r+")
        position = {video_id: row for row, video_id in enumerate(store.strings("videos/id"))}
        reconciled = Reconciled(rows=[position[v.id] for v in videos])
    return store, reconciled


def url_exists(url: str) -> bool:
    import fsspec
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(f"{path.rstrip('/')}/zarr.json")
