"""Bytes per clip and read throughput of the token array under each compressor, at the paper's clip shape.

python benchmarks/bench_store.py [--clips 24] [--tokens 4608] [--width 1280] [--from-store STORE]
Synthetic tokens are LayerNorm-like (per-channel scale and offset plus noise); pass --from-store to measure the
clips of a real store instead.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from common import append_row, machine

from fer_cache.store.writing import compressors_for

CODECS = ["none", "zstd", "blosc", "blosc-lz4"]


def compressors(name: str):
    if name == "blosc-lz4":
        return (zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle=zarr.codecs.BloscShuffle.bitshuffle),)
    return compressors_for(name)


def tokens(args) -> np.ndarray:
    if args.from_store:
        source = zarr.open_group(args.from_store, mode="r")["tokens"]
        V, K, S = source.shape[:3]
        return np.stack([source[v, k, s] for v in range(V) for k in range(K) for s in range(S)][:args.clips])
    rng = np.random.default_rng(0)
    scale, offset = rng.uniform(0.3, 2.0, args.width), rng.normal(0, 0.5, args.width)
    return (rng.standard_normal((args.clips, args.tokens, args.width)) * scale + offset).astype(np.float16)


def main() -> None:
    from fer_cache.store import tune_process
    tune_process()  # as the command-line tools do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=4608)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--from-store", default=None)
    args = parser.parse_args()
    values = tokens(args)
    folder = Path(tempfile.mkdtemp(prefix="bench_store_"))
    raw_mb = values[0].nbytes / 1e6
    print(f"{len(values)} clips of {list(values.shape[1:])} float16 ({raw_mb:.1f} MB raw each) on "
          f"{machine(torch.device('cpu'))}")
    for name in CODECS:
        array = zarr.create_array(str(folder / f"{name}.zarr"), shape=values.shape, dtype="float16",
                                  chunks=(1,) + values.shape[1:], compressors=compressors(name), fill_value=0)
        started = time.perf_counter()
        for i, clip in enumerate(values):
            array[i] = clip
        write_s = (time.perf_counter() - started) / len(values)
        started = time.perf_counter()
        for i in range(len(values)):
            array[i]
        read_s = (time.perf_counter() - started) / len(values)
        stored = array.nbytes_stored() / len(values)
        print(f"{name:10s} {stored / 1e6:6.2f} MB per clip ({stored / values[0].nbytes:5.1%} of raw), "
              f"read {raw_mb / read_s:6.0f} MB/s ({read_s * 1e3:5.1f} ms per clip), write {write_s * 1e3:5.1f} ms")
        append_row("store", {"machine": machine(torch.device("cpu")), "codec": name,
                             "source": args.from_store or "synthetic", "tokens": values.shape[1],
                             "width": values.shape[2], "bytes_per_clip": int(stored),
                             "read_ms_per_clip": round(read_s * 1e3, 2), "write_ms_per_clip": round(write_s * 1e3, 2)})
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
