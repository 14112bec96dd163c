"""What storing a compact store's coordinates in float16 or int8 adds to its rank-R truncation, on a store of your
own: the squared error against the exact coordinates, as a share of the token variance, for float16, int8 with a
per-token scale (what `fer-cache compact --dtype int8` writes) and int8 of whitened coordinates (not written).

python benchmarks/compact_rounding.py STORE RANK [--videos 40]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))
from fer_cache.store import Store, schema
from fer_cache.store.compaction import fit_basis


def int8_rounded(values: np.ndarray) -> np.ndarray:
    scale = np.abs(values).max(-1, keepdims=True) / 127
    scale[scale == 0] = 1
    return np.clip(np.round(values / scale), -127, 127) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("rank", type=int)
    parser.add_argument("--videos", type=int, default=40)
    args = parser.parse_args()
    store = Store.open(args.store)
    basis = fit_basis(store, args.rank, sample_tokens=100_000, seed=0)
    manifest = store.manifest()
    rows = np.flatnonzero(manifest.status == schema.DONE)[:args.videos]
    x = np.concatenate([schema.decode_tokens(*store.read(int(r), manifest.ids[r]), store.dtype)
                        .reshape(-1, basis.width) for r in rows])  # [n, D]
    z = basis.project(x)  # [n, R]
    variance = ((x - x.mean(0)) ** 2).sum(1).mean()
    sigma = np.sqrt(np.maximum(basis.variance, 1e-12))
    print(f"{args.store}: rank {args.rank} of {basis.width}, {len(x)} tokens of {len(rows)} videos; the truncation "
          f"leaves out {1 - basis.explained:.2e} of the token variance")
    for name, rounded in (("float16", z.astype(np.float16).astype(np.float32)), ("int8, per-token scale",
                          int8_rounded(z)), ("int8, whitened", int8_rounded(z / sigma) * sigma)):
        print(f"  {name:22s} adds {((rounded - z) ** 2).sum(1).mean() / variance:.2e} of the token variance")


if __name__ == "__main__":
    main()
