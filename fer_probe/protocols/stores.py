"""Comparing stores of the same videos (`ablate --versus`): which videos they share, how each is named in a report,
and what its encoder was pretrained to do."""

from pathlib import Path

import numpy as np

from fer_cache.store import Store
from fer_cache.store.schema import StoreFormatError
from fer_probe.data.reader import CacheReader
from fer_probe.errors import FerProbeError


def shared_videos(store_a: str, store_b: str, allow_incomplete: bool) -> tuple[set[str], set[str]]:
    """Store comparisons are paired over videos: both stores must hold the same videos (pending ones count as held)
    with the same subjects and label names. Returns (videos done in both, videos done in either)."""
    with CacheReader(store_a, allow_incomplete=allow_incomplete) as a, \
            CacheReader(store_b, allow_incomplete=allow_incomplete) as b:
        held_a, held_b = set(a.store.manifest().ids), set(b.store.manifest().ids)
        rows_a = {v: (s, a.label_names[int(y)]) for v, s, y in zip(a.ids, a.subjects, a.labels)}
        rows_b = {v: (s, b.label_names[int(y)]) for v, s, y in zip(b.ids, b.subjects, b.labels)}
        only_a, only_b = sorted(held_a - held_b), sorted(held_b - held_a)
        differ = sorted(v for v in set(rows_a) & set(rows_b) if rows_a[v] != rows_b[v])
        if only_a or only_b or differ:
            what = (f"{len(only_a)} videos only in {store_a} (e.g. {only_a[0]})" if only_a else
                    f"{len(only_b)} videos only in {store_b} (e.g. {only_b[0]})" if only_b else
                    f"video {differ[0]} has subject/label {rows_a[differ[0]]} in one and {rows_b[differ[0]]} in the "
                    f"other ({len(differ)} such)")
            raise FerProbeError(f"{store_a} and {store_b} do not hold the same videos: {what}; compare stores "
                                "extracted from one dataset")
        return set(rows_a) & set(rows_b), set(rows_a) | set(rows_b)


def compared_videos(store: str, versus: list[str], allow_incomplete: bool) -> tuple[frozenset[str] | None, int]:
    """(the videos every store holds done, or None when nothing is left out; how many done videos were left out):
    with --allow-incomplete, stores are compared on the videos done in all of them."""
    common, done = None, set()
    for other in versus:
        both, either = shared_videos(store, other, allow_incomplete)
        common = both if common is None else common & both
        done |= either
    if common is None or common == done:
        return None, 0
    return frozenset(common), len(done - common)


def store_label(store: str) -> str:
    """A store's name and encoder, e.g. `ravdess-vjepa21.zarr: vjepa2.1 vit_large (hierarchical)`."""
    attrs = store_attrs(store)
    if attrs is None:  # unreadable stores were refused already; the name alone then
        return Path(store).name
    encoder = attrs.get("encoder", {})
    output = f" ({encoder['output']})" if encoder.get("output", "last") != "last" else ""
    basis = attrs.get("storage", {}).get("basis")
    compact = f", compact: rank {basis['rank']}, {basis['explained']:.1%} of the variance" if basis else ""
    tuned = ", fine-tuned with labels" if encoder.get("fine_tuned") else ""  # not a frozen self-supervised encoder
    return (f"{Path(store).name}: {encoder.get('family')} {encoder.get('arch') or encoder.get('embed_dim')}{output}"
            f"{compact}{tuned}")


def token_shape(store: str) -> tuple[int, int] | None:
    """(tokens per clip, token width) of a store's encoder, e.g. (4608, 4096) for V-JEPA 2.1 hierarchical."""
    attrs = store_attrs(store) or {}
    grid, encoder = attrs.get("token_grid"), attrs.get("encoder") or {}
    width = encoder.get("token_width", encoder.get("embed_dim"))
    return (int(np.prod(grid)), int(width)) if grid and width else None


def probe_heads(store: str, heads: int | None) -> str:
    """' (tokens 64 x 512, probe heads 2 x 256 channels)': what the probe on this store attends over."""
    shape = token_shape(store)
    if shape is None:
        return ""
    split = f", probe heads {heads} x {shape[1] // heads} channels" if heads else ""
    return f" (tokens {shape[0]} x {shape[1]}{split})"


def store_record(store: str) -> dict:
    """A compared store as ablation.json names it: where, what, how pretrained, and whether fine-tuned with labels."""
    attrs = store_attrs(store) or {}
    return {"store": store, "label": store_label(store), "objective": attrs.get("objective"),
            "fine_tuned": (attrs.get("encoder") or {}).get("fine_tuned")}


def store_attrs(store: str) -> dict | None:
    try:
        return Store.open(store).attrs
    except StoreFormatError:
        return None


def by_objective(stores: list[str]) -> dict[str, list[str]]:
    """Stores grouped by what their encoder was pretrained to do (latent prediction, pixel reconstruction, ...),
    as extraction recorded it; the paper's question is the contrast between those groups."""
    groups: dict[str, list[str]] = {}
    for store in stores:
        objective = (store_attrs(store) or {}).get("objective") or "objective not recorded (an older store)"
        groups.setdefault(objective, []).append(store)
    return groups


def same_extraction_notes(store: str, versus: list[str]) -> list[str]:
    """Stores with one fingerprint are one extraction (or a copy): their comparison measures no encoder difference."""
    mine = (store_attrs(store) or {}).get("fingerprint")
    return [f"{Path(other).name} has the fingerprint of {Path(store).name}: the same extraction (or a copy), so this "
            "comparison measures training noise only, not a difference between encoders or samplings"
            for other in versus if mine and (store_attrs(other) or {}).get("fingerprint") == mine]
