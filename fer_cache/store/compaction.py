"""`fer-cache compact`: a full store -> a compact store of the same videos (schema 2), whose tokens are coordinates on a
rank-R principal basis fitted on a seeded, label-free sample of the store's tokens (or taken from another compact
store). Streaming (one video at a time) and resumable: a rerun writes only the videos not yet compacted.

Axes: K clips, S views, N tokens, D width, R rank.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_cache.errors import StoreError, StoreMismatchError
from fer_cache.store import schema, writing
from fer_cache.store.basis import Basis, BasisFit, sample_positions
from fer_cache.store.handle import Store

Progress = Callable[[int, int], None]  # (videos done, videos in all)
COMPACT_DTYPES = ("int8", "float16")


@dataclass(frozen=True, kw_only=True)
class CompactRequest:
    source: str
    out: str
    rank: int | None = None  # None: the rank of basis_from's basis
    dtype: str = "int8"
    sample_tokens: int = 200_000  # spread over every done video
    seed: int = 0
    basis_from: str | None = None  # reuse this compact store's basis instead of fitting one
    overwrite: bool = False


@dataclass(kw_only=True)
class CompactSummary:
    store: str
    basis: Basis
    done: int  # videos compacted in the store now
    total: int
    written_now: int
    not_done: int  # videos pending or failed in the source
    bytes_per_clip: tuple[float, float]  # (source, compact), token bytes of one clip view
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VideoRow:
    """A source video as the store writer takes it (VideoItem-like)."""
    id: str
    path: str
    label: int
    subject: str
    split: str = ""


def fit_basis(store: Store, rank: int, *, sample_tokens: int, seed: int, on_video: Progress | None = None) -> Basis:
    """A rank-R basis from `sample_tokens` tokens of the store's done videos: per video, an equal share of tokens at
    seeded positions of one seeded clip view (one chunk read per video, never the whole store; every clip view of
    the video where the share is larger than a clip)."""
    manifest = store.manifest()
    done = np.flatnonzero(manifest.status == schema.DONE)
    if not len(done):
        raise StoreError(f"{store.location}: no video is done; a basis is fitted on extracted tokens")
    _, K, S, N, D = store.tokens.shape
    per_video = math.ceil(sample_tokens / len(done))
    fit = BasisFit(D)
    for i, row in enumerate(done):
        rng = np.random.default_rng([seed, int(row), 1])
        selection = (int(rng.integers(K)), int(rng.integers(S))) if per_video <= N else ()  # one clip view, or all
        stored, scale = store.read(int(row), manifest.ids[row], selection)
        tokens = schema.decode_tokens(stored, store.dtype, scale).reshape(-1, D)  # [N or K*S*N, D]
        fit.add(tokens[sample_positions(int(row), per_video, len(tokens), seed=seed)])
        if on_video is not None:
            on_video(i + 1, len(done))
    fitted_on = {"store": store.location, "fingerprint": store.attrs.get("fingerprint", ""),
                 "videos": int(len(done)), "seed": seed, "sample_tokens": sample_tokens}
    return fit.fit(rank, fitted_on)


def compact_attrs(source: Store, basis: Basis, dtype: str) -> dict:
    """The source's attributes with a storage block that names the basis (so the fingerprint covers it)."""
    attrs = source.attrs
    storage = {"dtype": dtype, "compressor": attrs.get("storage", {}).get("compressor", "none"),
               "basis": basis.describe()}
    new = schema.store_attrs(dataset=attrs["dataset"], label_names=attrs["label_names"], encoder=attrs["encoder"],
                             sampling=attrs["sampling"], storage=storage, token_grid=attrs["token_grid"])
    return new | {"software": attrs.get("software", {}),
                  "compacted_from": {"store": source.location, "fingerprint": attrs.get("fingerprint", "")}}


def choose_basis(source: Store, request: CompactRequest, on_fit: Progress | None) -> Basis:
    """The basis of another store (basis_from), of the compact store being resumed, or a new fit."""
    if request.basis_from:
        other = Store.open(request.basis_from)
        if other.basis is None:
            raise StoreError(f"{request.basis_from}: not a compact store, it has no basis to reuse; compact it first")
        if other.attrs.get("encoder") != source.attrs.get("encoder"):
            raise StoreMismatchError(f"{request.basis_from}: its basis was fitted on tokens of another encoder than "
                                     f"{source.location}'s; take a basis of the same encoder")
        if request.rank not in (None, other.basis.rank):
            raise StoreError(f"--rank {request.rank} disagrees with the rank {other.basis.rank} of "
                             f"{request.basis_from}'s basis; leave --rank out")
        return other.basis
    if request.rank is None:
        raise StoreError("name the rank (--rank R), or reuse a basis with --basis-from")
    wanted = {"fingerprint": source.attrs.get("fingerprint", ""), "seed": request.seed,
              "sample_tokens": request.sample_tokens}
    existing = None if request.overwrite else reusable_basis(request.out, request.rank, wanted)
    if existing is not None:
        return existing  # resuming: the same fit, not repeated
    return fit_basis(source, request.rank, sample_tokens=request.sample_tokens, seed=request.seed, on_video=on_fit)


def reusable_basis(location: str, rank: int, wanted: dict) -> Basis | None:
    """The basis of the compact store at `location` where it has this rank and was fitted as `wanted` says (its
    fitted_on): what a resumed compaction or extraction reuses instead of fitting again. None otherwise."""
    try:
        basis = Store.open(location).basis
    except StoreError:
        return None
    if basis is None or basis.rank != rank or any(basis.fitted_on.get(k) != v for k, v in wanted.items()):
        return None
    return basis


def compact_store(request: CompactRequest, *, on_fit: Progress | None = None,
                  on_video: Progress | None = None) -> CompactSummary:
    """Write (or resume) the compact store `request.out` of `request.source`'s videos."""
    started = time.perf_counter()
    if request.dtype not in COMPACT_DTYPES:
        raise StoreError(f"--dtype {request.dtype}: compact stores hold int8 or float16 coordinates")
    if not schema.is_url(request.out) and Path(request.out).resolve() == Path(request.source).resolve():
        raise StoreError(f"--out {request.out} is the store being compacted; write the compact store beside it")
    source = Store.open(request.source)
    if source.basis is not None:
        raise StoreError(f"{request.source} is already compact (rank {source.basis.rank}); compact the full store")
    if source.copies or source.dense:
        raise StoreError(f"{request.source} holds {'augmented copies' if source.copies else 'every clip start'}, "
                         "which compact does not carry over yet; extract it compact instead (extraction rank)")
    _, K, S, N, D = source.tokens.shape
    if request.rank is not None and not 0 < request.rank < D:
        raise StoreError(f"--rank {request.rank}: choose a rank between 1 and the token width {D} (exclusive)")
    if request.sample_tokens < 2 * (request.rank or 1):
        raise StoreError(f"--sample-tokens {request.sample_tokens}: fit a rank-{request.rank} basis on at least "
                         f"{2 * (request.rank or 1)} tokens (the default is 200000)")
    basis = choose_basis(source, request, on_fit)
    if basis.width != D:
        raise StoreMismatchError(f"{request.basis_from}: its basis is {basis.width} wide, the tokens of "
                                 f"{request.source} are {D} wide")
    manifest = source.manifest()
    rows = [VideoRow(id=i, path=p, label=int(lab), subject=s, split=sp) for i, p, lab, s, sp in zip(
        manifest.ids, source.strings("videos/path"), manifest.labels, manifest.subjects,
        manifest.splits or [""] * len(manifest))]
    attrs = compact_attrs(source, basis, request.dtype)
    layout = schema.Layout(videos=len(rows), clips=K, views=S, tokens=N, width=basis.rank,
                           frames_per_clip=source.group["clips/frame_index"].shape[2], dtype=request.dtype)
    with writing.StoreLock(request.out):
        out, reconciled = writing.prepare_for_extraction(request.out, layout, rows, attrs=attrs,
                                                         overwrite=request.overwrite, basis=basis)
        written = copy_videos(source, out, rows=reconciled.rows, on_video=on_video)
    status = out.group["videos/status"][:]
    itemsize = source.tokens.dtype.itemsize
    compact_bytes = N * basis.rank * (1 if request.dtype == "int8" else 2) + (4 * N if request.dtype == "int8" else 0)
    return CompactSummary(store=request.out, basis=basis, done=int((status == schema.DONE).sum()), total=len(rows),
                          written_now=written, not_done=int((manifest.status != schema.DONE).sum()),
                          bytes_per_clip=(N * D * itemsize + (4 * N if source.dtype == "int8" else 0), compact_bytes),
                          seconds=time.perf_counter() - started)


def copy_videos(source: Store, out: Store, *, rows: list[int], on_video: Progress | None) -> int:
    """Every done source video not yet done in the compact store, projected onto its basis; failures copied."""
    status, manifest = out.group["videos/status"][:], source.manifest()
    errors = source.strings("videos/error")
    todo = [(v, row) for v, row in enumerate(rows)
            if status[row] != schema.DONE and manifest.status[v] != schema.PENDING]
    written = 0
    for i, (v, row) in enumerate(todo):
        if manifest.status[v] == schema.FAILED:
            writing.mark_failed(out, row, errors[v])
        else:
            stored, scale = source.read(v, manifest.ids[v])
            writing.write_video(out, row, schema.decode_tokens(stored, source.dtype, scale),
                                frame_index=source.group["clips/frame_index"][v],
                                n_frames=int(source.group["videos/n_frames"][v]))
            written += 1
        if on_video is not None:
            on_video(i + 1, len(todo))
    return written
