"""The store (DESIGN section 4): its format (`schema`), the shard byte layout (`shards`), one opened store
(`handle.Store`), writing (`writing`), and looking at a finished store (`audit`). numpy and zarr only: the one part
of fer_cache, besides `labels`, that fer_probe imports."""

from fer_cache.store.handle import Manifest, Store
from fer_cache.store.schema import DONE, FAILED, PENDING, StoreFormatError

__all__ = ["Manifest", "Store", "StoreFormatError", "PENDING", "DONE", "FAILED", "tune_process"]


def tune_process() -> None:
    """Process-wide settings for moving ~12 MB token chunks, applied once by the command-line tools and the
    benchmarks (never by a library constructor): zarr writes every chunk without first testing whether it holds
    only fill values (tokens never do; the test is a full pass over each chunk), and glibc keeps freed blocks for
    reuse instead of returning them and faulting fresh pages in for the next chunk (3-4x faster sharded writes and
    about 2x faster reads on the project's machine, benchmarks/bench_store.py; Linux glibc only)."""
    import ctypes
    import ctypes.util
    import sys

    import zarr

    zarr.config.set({"array.write_empty_chunks": True})
    if not sys.platform.startswith("linux") or (name := ctypes.util.find_library("c")) is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve large blocks from the heap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep up to 2 GiB of freed heap for reuse

