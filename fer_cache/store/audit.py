"""Looking at a finished store: `info` (what is in it), `verify` (is every value there and finite), `export-h5`."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_cache.errors import StoreError
from fer_cache.store import schema
from fer_cache.store.basis import NODES
from fer_cache.store.handle import Store
from fer_cache.store.shards import chunk_checksums

Progress = Callable[[int, int], None]  # (videos done, videos in all)


@dataclass(kw_only=True)
class StoreInfo:
    location: str
    attrs: dict
    shape: tuple[int, ...]
    counts: dict[str, int]
    stored_bytes: int
    bytes_per_clip: float
    dtype: str
    quantisation_error: float | None  # bound on the stored dtype's rounding error (bfloat16, int8), first video
    padding: dict = field(default_factory=dict)  # done videos shorter than one clip span, and how many mostly padding


def store_bytes(group) -> int:
    total = 0
    for _, array in group.arrays():
        total += array.nbytes_stored()
    for _, sub in group.groups():
        total += store_bytes(sub)
    return total


def store_info(location: str) -> StoreInfo:
    group = Store.open(location).group
    tokens = group["tokens"]
    status = group["videos/status"][:]
    counts = {"videos": int(status.size)} | {name: int((status == code).sum())
                                              for code, name in schema.STATUS_NAMES.items()}
    V, K, S = tokens.shape[:3]
    done = max(counts["done"] * K * S, 1)
    dtype = schema.storage_dtype(group)
    total = store_bytes(group)
    return StoreInfo(location=location, attrs=dict(group.attrs), shape=tuple(tokens.shape), counts=counts,
                     stored_bytes=total, bytes_per_clip=total / done, dtype=dtype,
                     quantisation_error=quantisation_error(group, dtype, status),
                     padding=dict(zip(("shorter_than_a_clip", "mostly_padding", "clip_span"),
                                      schema.padded_videos(group))))


def quantisation_error(group, dtype: str, status: np.ndarray) -> float | None:
    """The largest rounding error the stored dtype can have made, from the stored values of the first done video:
    bfloat16 rounds to 8 significant bits (relative 2^-9); int8 to half a per-token scale step."""
    if dtype == "float16" or not (status == schema.DONE).any():
        return None
    i = int(np.flatnonzero(status == schema.DONE)[0])
    if dtype == "int8":
        return float(group["tokens_scale"][i].max() / 2)
    values = schema.decode_tokens(group["tokens"][i], dtype)
    return float(np.abs(values).max() * 2.0**-9)


@dataclass
class VerifyReport:
    location: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    damaged: list[int] = field(default_factory=list)  # rows of done videos whose stored values are unusable
    checksums: bool = False  # every token chunk was checked against its crc32c
    command: str | None = None  # the extraction that wrote the store, to rerun after a repair

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(location: str, on_video: Progress | None = None, *, repair: bool = False) -> VerifyReport:
    """Every video done and every stored value present and finite; each problem named with the chunk it is in.
    `repair` marks the damaged videos pending, so that rerunning the extraction encodes them again."""
    store = Store.open(location, mode="r+" if repair else "r", direct=False)  # through zarr: independent of the
    group = store.group                                                        # fast shard reader
    report = VerifyReport(location, command=" ".join(group.attrs.get("created_by", {}).get("argv") or []) or None)
    report.problems += check_attrs(group)
    report.checksums = chunk_checksums(group["tokens"])
    if not report.checksums:
        report.notes.append("no chunk checksums (a store written before they existed, or by another tool): damaged "
                            "bytes that stay finite cannot be detected; a new extraction or `fer-cache compact` "
                            "writes them")
    if "attributes_digest" not in group.attrs:
        report.notes.append("no attributes_digest (a store written before it existed): a hand edit of dataset or "
                            "label_names cannot be detected")
    ids, errors = store.strings("videos/id"), store.strings("videos/error")
    status = group["videos/status"][:]
    missing = set(store.lost_chunks(np.flatnonzero(status == schema.DONE)) or [])
    pending = [ids[i] for i in np.flatnonzero(status == schema.PENDING)]
    if pending:  # one line for all of them: a partial store has hundreds
        report.problems.append(f"{len(pending)} of {len(ids)} videos pending (not extracted; rerun extract to "
                               f"resume): {', '.join(pending[:3])}" + (" ..." if len(pending) > 3 else ""))
    for i, video_id in enumerate(ids):
        if on_video is not None:
            on_video(i + 1, len(ids))
        if status[i] == schema.PENDING:
            continue
        if status[i] == schema.FAILED:
            report.problems.append(f"video {video_id}: failed ({errors[i]})")
            continue
        if i in missing:
            report.problems.append(f"video {video_id}: token chunks missing from {store.chunk_folder(i)} (deleted or "
                                   "never written); rerun the extraction on this store to encode it again")
            continue
        problems = value_problems(store, i, video_id)
        if problems:
            report.problems += problems
            report.damaged.append(i)
    if repair and report.damaged:
        group["videos/status"][report.damaged] = schema.PENDING  # the extraction encodes pending videos again
    return report


def value_problems(store: Store, row: int, video_id: str) -> list[str]:
    """What is wrong with video `row`'s stored values, in each token array the store has (the clean tokens, and
    the augmented copies): a chunk that does not decode, non-finite values; each named with its chunk folder."""
    problems = []
    for name in store.arrays:  # tokens, augmented
        what = "token" if name == "tokens" else "augmented-copy"
        try:
            stored, scale = store.read(row, video_id, array=name)
        except schema.StoreFormatError as exc:
            problems.append(f"video {video_id}: {name} unreadable ({exc.__cause__.__class__.__name__}) in "
                            f"{store.chunk_folder(row, name)}")
            continue
        bad = int((~np.isfinite(schema.decode_tokens(stored, store.dtype, scale))).sum())
        if bad:
            problems.append(f"video {video_id}: {bad} non-finite {what} values (NaN/inf) in "
                            f"{store.chunk_folder(row, name)}")
    return problems


def check_attrs(group) -> list[str]:
    """The fingerprint must match the attributes it summarises (catches tampering)."""
    attrs = dict(group.attrs)
    needed = ["dataset", "label_names", "encoder", "sampling", "token_grid", "storage", "fingerprint"]
    missing = [k for k in needed if k not in attrs]
    if missing:
        return [f"attributes missing: {', '.join(missing)}"]
    expected = schema.fingerprint(attrs["encoder"], attrs["sampling"], attrs["storage"], token_grid=attrs["token_grid"])
    problems = []
    if expected != attrs["fingerprint"]:
        problems.append(f"attribute fingerprint {attrs['fingerprint']} does not match the encoder/sampling/storage "
                        f"attributes ({expected}): they were edited")
    shape = group["tokens"].shape
    t, h, w = attrs["token_grid"]
    width = attrs["encoder"].get("token_width", attrs["encoder"].get("embed_dim"))
    width = (attrs["storage"].get("basis") or {}).get("rank", width)  # a compact store holds R coordinates
    if shape[3] != t * h * w or shape[4] != width:
        problems.append(f"tokens shape {shape} disagrees with token_grid {attrs['token_grid']} / token width {width}")
    problem = schema.label_names_problem(attrs) or schema.label_problem(group["videos/label"][:],
                                                                        list(attrs["label_names"])) \
        or schema.clip_count_problem(group)
    if problem:
        problems.append(problem)
    return problems


def export_h5(location: str, out: str | Path, on_video: Progress | None = None) -> int:
    """The same arrays and attributes in one HDF5 file; returns the number of videos written."""
    import json

    import h5py

    out = Path(out)
    if out.is_dir():
        raise StoreError(f"{out} is a folder; name the HDF5 file to write, e.g. {out / 'tokens.h5'}")
    if not out.parent.is_dir():
        raise StoreError(f"cannot write {out}: the folder {out.parent} does not exist; create it first")
    group = Store.open(location).group
    with h5py.File(out, "w") as f:
        for key, value in group.attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        tokens = group["tokens"]
        data = f.create_dataset("tokens", shape=tokens.shape, dtype=tokens.dtype,
                                chunks=(1, 1, 1) + tuple(tokens.shape[3:]), compression="gzip", compression_opts=1)
        for i in range(tokens.shape[0]):
            data[i] = tokens[i]
            if on_video is not None:
                on_video(i + 1, tokens.shape[0])
        data.attrs["storage_dtype"] = schema.storage_dtype(group)
        for name in ("videos/id", "videos/path", "videos/subject", "videos/error", "videos/split"):
            if name in group:
                f.create_dataset(name, data=np.array(schema.read_strings(group[name]), dtype=object),
                                 dtype=h5py.string_dtype())
        for name in ("videos/label", "videos/n_frames", "videos/status", "clips/frame_index"):
            f.create_dataset(name, data=group[name][:])
        if "tokens_scale" in group:
            f.create_dataset("tokens_scale", data=group["tokens_scale"][:])
        for name in NODES:  # a compact store's basis: its tokens are coordinates on it
            if name in group:
                f.create_dataset(name, data=group[name][...])
    return tokens.shape[0]
