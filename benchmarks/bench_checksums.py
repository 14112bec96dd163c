"""What the per-chunk crc32c costs: a video's shard written and read back by fer_cache's direct path, with chunk
checksums (stores written now) and without (stores written before), in one run, page cache warm.

python benchmarks/bench_checksums.py [--videos 6] [--clips 8] [--tokens 4608] [--width 1280] [--repeats 3]
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

from fer_cache.store import shards


def shard_array(folder: Path, args, checksums: bool):
    """A tokens array in the default layout (one shard per video, one chunk per clip), with or without checksums."""
    shape = (args.videos, args.clips, 1, args.tokens, args.width)
    return zarr.create_array(str(folder / f"{'crc' if checksums else 'plain'}.zarr"), shape=shape, dtype="float16",
                             chunks=(1, 1, 1, args.tokens, args.width), shards=(1, *shape[1:]), fill_value=0,
                             compressors=(zarr.codecs.Crc32cCodec(),) if checksums else None)


def measure(folder: Path, args, values: np.ndarray, checksums: bool) -> tuple[float, float]:
    """(seconds to write every video, best seconds to read every video) through the direct shard path."""
    array = shard_array(folder, args, checksums)
    location = str(folder / f"{'crc' if checksums else 'plain'}.zarr")
    assert shards.writes_whole_shards(array, location) and shards.chunk_checksums(array) == checksums
    buffers = []
    for video in values:  # what the batch encoder fills: memory laid out as the shard goes to disk
        buffers.append(shards.chunked_empty(video.shape, np.float16) if checksums else
                       shards.aligned_empty(video.shape, np.float16))
        buffers[-1][...] = video
    started = time.perf_counter()
    for v in range(args.videos):
        shards.write_shard(array, location, "", row=v, values=buffers[v])
    write = time.perf_counter() - started
    reader, out = shards.ShardReader(array, location), np.empty(values.shape[1:], dtype=np.float16)
    reads = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for v in range(args.videos):
            reader.read(v, (), out)
        reads.append(time.perf_counter() - started)
    assert np.array_equal(out, values[-1])
    return write, reads[0], min(reads[1:])  # the first read of a chunk is checked, later ones trust it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("videos", 6), ("clips", 8), ("tokens", 4608), ("width", 1280), ("repeats", 4)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    values = np.random.default_rng(0).standard_normal(
        (args.videos, args.clips, 1, args.tokens, args.width), dtype=np.float32).astype(np.float16)
    folder = Path(tempfile.mkdtemp(prefix="bench_checksums_"))
    try:
        (plain_write, plain_first, plain_read), (crc_write, crc_first, crc_read) = (
            measure(folder, args, values, c) for c in (False, True))
    finally:
        shutil.rmtree(folder)
    mb = values.nbytes / 1e6
    print(f"{args.videos} videos x {args.clips} clips of [{args.tokens}, {args.width}] float16 ({mb:.0f} MB) on "
          f"{machine(torch.device('cpu'))}")
    print(f"first read: {plain_first:.3f} s without checksums, {crc_first:.3f} s checking every chunk "
          f"({mb / crc_first:.0f} MB/s); ratio {crc_first / plain_first:.2f}x")
    print(f"later reads (checked chunks trusted): {plain_read:.3f} s without, {crc_read:.3f} s with checksums; "
          f"ratio {crc_read / plain_read:.2f}x")
    print(f"write: {plain_write:.3f} s without checksums, {crc_write:.3f} s with them; ratio "
          f"{crc_write / plain_write:.2f}x")
    append_row("checksums", {"videos": args.videos, "clip_mb": round(mb / args.videos / args.clips, 2),
                                 "first_read_plain_s": round(plain_first, 4), "first_read_crc_s": round(crc_first, 4),
                                 "read_plain_s": round(plain_read, 4), "read_crc_s": round(crc_read, 4),
                                 "write_plain_s": round(plain_write, 4), "write_crc_s": round(crc_write, 4)})


if __name__ == "__main__":
    main()
