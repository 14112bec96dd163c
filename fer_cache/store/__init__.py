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
    about 2x faster reads on the project's machine, benchmarks/bench_store.py; Linux glibc only). numpy no longer
    asks for huge pages on its large arrays: on that heap the request made fresh numpy memory 15-20x slower to fault
    in on the same machine (282 MB: 1.3-2.4 s against 0.08-0.12 s), which a store kept in memory paid at the start
    of every run."""
    import ctypes
    import ctypes.util
    import sys

    import numpy as np
    import zarr

    zarr.config.set({"array.write_empty_chunks": True})
    core = getattr(np, "_core", None) or np.core  # numpy 2, numpy 1
    if (no_huge_pages := getattr(core.multiarray, "_set_madvise_hugepage", None)) is not None:
        no_huge_pages(False)  # what NUMPY_MADVISE_HUGEPAGE=0 does at numpy's import
    if not sys.platform.startswith("linux") or (name := ctypes.util.find_library("c")) is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve large blocks from the heap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep up to 2 GiB of freed heap for reuse

