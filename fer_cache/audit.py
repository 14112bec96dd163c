"""Looking at a finished store: `info` (what is in it), `verify` (is every value there and finite), `export-h5`."""

import asyncio
from dataclasses import dataclass, field

import numpy as np

from fer_cache import store as st
from fer_cache.errors import StoreError


@dataclass
class StoreInfo:
    location: str
    attrs: dict
    shape: tuple[int, ...]
    counts: dict[str, int]
    stored_bytes: int
    bytes_per_clip: float
    dtype: str
    quantisation_error: float | None  # bound on the stored dtype's rounding error (bfloat16, int8), first video


def open_checked(location: str, mode: str = "r"):
    group = st.open_group(location, mode=mode)
    st.check_schema(group, location)
    if "tokens" not in group or "videos" not in group:
        raise StoreError(f"{location}: missing the 'tokens' or 'videos' node; the store is incomplete")
    return group


def store_bytes(group) -> int:
    total = 0
    for _, array in group.arrays():
        total += array.nbytes_stored()
    for _, sub in group.groups():
        total += store_bytes(sub)
    return total


def store_info(location: str) -> StoreInfo:
    group = open_checked(location)
    tokens = group["tokens"]
    status = group["videos/status"][:]
    counts = {"videos": int(status.size), "done": int((status == st.DONE).sum()),
              "pending": int((status == st.PENDING).sum()), "failed": int((status == st.FAILED).sum())}
    V, K, S = tokens.shape[:3]
    done = max(counts["done"] * K * S, 1)
    dtype = tokens.attrs.get("storage_dtype", "float16")
    total = store_bytes(group)
    return StoreInfo(location, dict(group.attrs), tuple(tokens.shape), counts, total, total / done, dtype,
                     quantisation_error(group, dtype, status))


def quantisation_error(group, dtype: str, status: np.ndarray) -> float | None:
    """The largest rounding error the stored dtype can have made, from the stored values of the first done video:
    bfloat16 rounds to 8 significant bits (relative 2^-9); int8 to half a per-token scale step."""
    if dtype == "float16" or not (status == st.DONE).any():
        return None
    i = int(np.flatnonzero(status == st.DONE)[0])
    if dtype == "int8":
        return float(group["tokens_scale"][i].max() / 2)
    values = st.decode_tokens(group["tokens"][i], dtype)
    return float(np.abs(values).max() * 2.0**-9)


@dataclass
class VerifyReport:
    location: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(location: str) -> VerifyReport:
    """Every video done and every stored value present and finite; each problem named."""
    report = VerifyReport(location)
    group = open_checked(location)
    report.problems += check_attrs(group)
    ids = st.read_strings(group["videos/id"])
    status = group["videos/status"][:]
    errors = st.read_strings(group["videos/error"])
    tokens = group["tokens"]
    dtype = tokens.attrs.get("storage_dtype", "float16")
    written = videos_with_tokens(group)
    for i, video_id in enumerate(ids):
        if status[i] == st.PENDING:
            report.problems.append(f"video {video_id}: pending (not extracted; rerun extract to resume)")
            continue
        if status[i] == st.FAILED:
            report.problems.append(f"video {video_id}: failed ({errors[i]})")
            continue
        try:
            values = tokens[i]
            scale = group["tokens_scale"][i] if dtype == "int8" else None
            decoded = st.decode_tokens(values, dtype, scale)
        except Exception as exc:  # noqa: BLE001 - verify reports any unreadable chunk as a finding
            report.problems.append(f"video {video_id}: tokens unreadable ({type(exc).__name__}: {exc})")
            continue
        if written is not None and i not in written:
            report.problems.append(f"video {video_id}: token chunks missing from the store (deleted or never written)")
        if not np.isfinite(decoded).all():
            bad = int((~np.isfinite(decoded)).sum())
            report.problems.append(f"video {video_id}: {bad} non-finite token values (NaN/inf)")
    return report


def videos_with_tokens(group) -> set[int] | None:
    """Rows that have token files, from one listing of the store (None where the store cannot list keys). A done
    video whose shard or chunk is gone would otherwise read back as fill values."""
    async def rows() -> set[int]:
        return {int(key.split("/")[2]) async for key in group.store.list_prefix("tokens/c/")}
    try:
        return asyncio.run(rows())
    except Exception:  # noqa: BLE001 - a store that cannot list keys skips this one check
        return None


def check_attrs(group) -> list[str]:
    """The fingerprint must match the attributes it summarises (catches tampering)."""
    attrs = dict(group.attrs)
    needed = ["dataset", "label_names", "encoder", "sampling", "token_grid", "storage", "fingerprint"]
    missing = [k for k in needed if k not in attrs]
    if missing:
        return [f"attributes missing: {', '.join(missing)}"]
    expected = st.fingerprint(attrs["encoder"], attrs["sampling"], attrs["storage"], attrs["token_grid"])
    problems = []
    if expected != attrs["fingerprint"]:
        problems.append(f"attribute fingerprint {attrs['fingerprint']} does not match the encoder/sampling/storage "
                        f"attributes ({expected}): they were edited")
    shape = group["tokens"].shape
    t, h, w = attrs["token_grid"]
    if shape[3] != t * h * w or shape[4] != attrs["encoder"].get("embed_dim"):
        problems.append(f"tokens shape {shape} disagrees with token_grid {attrs['token_grid']} / embed_dim")
    labels = group["videos/label"][:]
    if labels.size and labels.max() >= len(attrs["label_names"]):
        problems.append("videos/label holds an index beyond label_names")
    return problems


def export_h5(location: str, out: str) -> int:
    """The same arrays and attributes in one HDF5 file; returns the number of videos written."""
    import json

    import h5py

    group = open_checked(location)
    with h5py.File(out, "w") as f:
        for key, value in group.attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        tokens = group["tokens"]
        data = f.create_dataset("tokens", shape=tokens.shape, dtype=tokens.dtype,
                                chunks=(1, 1, 1) + tuple(tokens.shape[3:]), compression="gzip", compression_opts=1)
        for i in range(tokens.shape[0]):
            data[i] = tokens[i]
        data.attrs["storage_dtype"] = tokens.attrs.get("storage_dtype", "float16")
        for name in ("videos/id", "videos/path", "videos/subject", "videos/error"):
            f.create_dataset(name, data=np.array(st.read_strings(group[name]), dtype=object),
                             dtype=h5py.string_dtype())
        for name in ("videos/label", "videos/n_frames", "videos/status", "clips/frame_index"):
            f.create_dataset(name, data=group[name][:])
        if "tokens_scale" in group:
            f.create_dataset("tokens_scale", data=group["tokens_scale"][:])
    return tokens.shape[0]
