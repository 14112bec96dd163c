"""One video's tokens as one shard file, read and written straight from and to disk (the layout fer_cache creates
by default: one shard per video, one inner chunk per clip view, uncompressed little-endian chunks each followed by
its crc32c (stores written before that have none), the index of (offset, length) pairs at the end with its crc32c).
Byte for byte what zarr's sharding codec writes and reads (tests/fer_cache/test_shards.py); going through zarr's
codec pipeline instead costs 3-6x as long to write (benchmarks/bench_pipeline.py) and several times as long to read
a clip (benchmarks/bench_probe.py). Other layouts go through zarr. This module depends on nothing else in the store
package.
"""

import os
from pathlib import Path

import google_crc32c
import numpy as np

PAGE = 4096  # O_DIRECT needs page-aligned buffers, offsets and lengths
EMPTY = 2**64 - 1  # an index entry of a chunk that was never written


def writes_whole_shards(array, location: str) -> bool:
    """Whether one video's values can be written as one shard file directly: a local store, one shard per video,
    uncompressed little-endian chunks (with or without a crc32c each), the index at the end with its crc32c (what
    fer_cache creates by default)."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
    from zarr.codecs.sharding import ShardingCodecIndexLocation

    codecs = array.metadata.codecs
    if "://" in str(location) or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    sharding = codecs[0]
    little = BytesCodec(endian="little")
    plain = (little,) if array.dtype.itemsize > 1 else (BytesCodec(endian=None), little)
    inner = tuple(sharding.codecs[:-1]) if chunk_checksums(array) else tuple(sharding.codecs)
    return (array.shards == (1, *array.shape[1:]) and len(inner) == 1 and inner[0] in plain
            and tuple(sharding.index_codecs) == (little, Crc32cCodec())
            and sharding.index_location == ShardingCodecIndexLocation.end
            and array.metadata.chunk_key_encoding.separator == "/")


def chunk_checksums(array) -> bool:
    """Whether every inner chunk of a sharded array ends in its crc32c (stores written since the checksums came)."""
    from zarr.codecs import Crc32cCodec, ShardingCodec

    codecs = array.metadata.codecs
    return (len(codecs) == 1 and isinstance(codecs[0], ShardingCodec) and len(codecs[0].codecs) > 1
            and isinstance(codecs[0].codecs[-1], Crc32cCodec))


def write_shard(array, location: str, name: str, *, row: int, values: np.ndarray) -> None:
    """One video's values [K, S, ...] as a complete shard file, written atomically, byte for byte what zarr's
    sharding codec reads: the inner chunks in C order, then the index of (offset, length) pairs and its crc32c.
    Writing through zarr's codec pipeline instead costs 3-6x as long (benchmarks/bench_pipeline.py)."""

    inner = tuple(s // c for s, c in zip(array.shards, array.chunks))  # chunks per shard, e.g. (1, K, S, 1, 1)
    count = int(np.prod(inner))
    written = values.shape[0] * values.shape[1]  # fewer clips than the shard holds: a dense store's shorter video
    dtype = array.dtype.newbyteorder("<")
    if chunk_checksums(array):
        data, length = with_checksums(values, written, dtype)  # [written, stride] bytes, each chunk and its crc32c
        stride = data.shape[1]
    else:
        data = np.ascontiguousarray(values, dtype=dtype)
        stride = length = data.nbytes // written
    index = np.full((count, 2), EMPTY, dtype="<u8")  # clip slots past the video's clips stay unwritten
    index[:written, 0] = np.arange(written, dtype=np.uint64) * stride
    index[:written, 1] = length
    index_bytes = index.tobytes()
    checksum = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()
    path = Path(location) / name / "c" / str(row) / Path(*(["0"] * (array.ndim - 1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    data = memoryview(data.reshape(-1)).cast("B")
    try:
        if not write_direct(partial, data):
            with open(partial, "wb") as f:
                f.write(data)
        with open(partial, "ab") as f:
            f.write(index_bytes + checksum)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk leaves no half-written shard behind
        raise


def write_file(path: Path, data: bytes) -> None:
    """`data` as the file `path`, atomically (a .partial renamed), its page-aligned bulk past the page cache
    (write_direct) and the rest appended: for large results such as a probe's weights, whose buffered writes can
    wait seconds behind the page cache's writeback (400 MB on the project's machine: 0.3 s direct, 0.3-4 s buffered)."""
    bulk = len(data) - len(data) % PAGE
    aligned = aligned_empty((bulk,), np.uint8)
    aligned[:] = np.frombuffer(data, np.uint8, count=bulk)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    try:
        direct = bulk > 0 and write_direct(partial, memoryview(aligned))
        with open(partial, "ab" if direct else "wb") as f:
            f.write(memoryview(data)[bulk:] if direct else data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def remove_partials(location: str) -> int:
    """Half-written shard files (`*.partial`) left by a run that was killed mid-write; the resumed run writes those
    videos again. Returns how many were removed."""
    if "://" in location:
        return 0
    removed = 0
    for folder, _, files in os.walk(location):
        for name in files:
            if name.endswith(".partial"):
                (Path(folder) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def chunked_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Memory for one video's values [K, S, ...] laid out as its checksummed shard goes to disk: every chunk at a
    page-aligned stride, with room for its crc32c after it, so that write_shard adds the checksums in place and
    writes with O_DIRECT, without a copy. The padding between chunks is never read (the index skips it)."""
    count, itemsize = shape[0] * shape[1], np.dtype(dtype).itemsize
    chunk = int(np.prod(shape[2:])) * itemsize
    stride = -(-(chunk + 4) // PAGE) * PAGE
    raw = aligned_empty((count * stride,), np.uint8)
    inner = tuple(int(np.prod(shape[i + 1:])) * itemsize for i in range(2, len(shape)))  # C order within a chunk
    return np.ndarray(shape, dtype=dtype, buffer=raw, strides=(shape[1] * stride, stride, *inner))


def with_checksums(values: np.ndarray, count: int, dtype) -> tuple[np.ndarray, int]:
    """The shard's chunks as zarr's crc32c codec lays them out, each followed by its crc32c (little endian), at the
    page-aligned stride of chunked_empty (padding zeroed, so that equal values give equal files). Values already in
    that memory are used in place; others are copied there. Returns ([count, stride] bytes, chunk length + 4)."""
    chunk = int(np.prod(values.shape)) // count * np.dtype(dtype).itemsize
    stride = -(-(chunk + 4) // PAGE) * PAGE
    in_place = values.dtype == dtype and values.strides[:2] == (values.shape[1] * stride, stride)
    data = chunk_memory(values, count * stride) if in_place else None
    if data is None:
        copy = chunked_empty((count, 1, *values.shape[2:]), dtype)  # [K*S, 1, ...]
        copy[...] = np.asarray(values, dtype=dtype).reshape(copy.shape)
        data = chunk_memory(copy, count * stride)
    data = data.reshape(count, stride)
    for i in range(count):
        data[i, chunk:chunk + 4] = np.frombuffer(google_crc32c.value(data[i, :chunk]).to_bytes(4, "little"), np.uint8)
        data[i, chunk + 4:] = 0
    return data, chunk + 4


def chunk_memory(values: np.ndarray, nbytes: int) -> np.ndarray | None:
    """The `nbytes` of memory that values from chunked_empty start at, as uint8 (None for other arrays)."""
    owner = values.base
    if not isinstance(owner, np.ndarray) or owner.dtype != np.uint8 or owner.ndim != 1:
        return None
    offset = values.__array_interface__["data"][0] - owner.ctypes.data
    return owner[offset:offset + nbytes] if 0 <= offset and offset + nbytes <= owner.size else None


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array whose data starts on a page boundary, so that a shard can go to disk with O_DIRECT."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + PAGE, dtype=np.uint8)
    offset = (-raw.ctypes.data) % PAGE
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def write_direct(path: Path, data: memoryview) -> bool:
    """Write page-aligned data past the page cache (O_DIRECT): on the project's machine 4x the rate of a buffered
    write, whose cost is allocating and copying into cache pages. False where it does not apply (unaligned data,
    file systems without O_DIRECT): the caller then writes normally."""

    flag = getattr(os, "O_DIRECT", 0)
    address = np.frombuffer(data, dtype=np.uint8).ctypes.data if len(data) else 0
    if not flag or address % PAGE or len(data) % PAGE:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o644)
    except OSError:
        return False
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class ShardReader:
    """Clip views of one array straight from the videos' shard files: one read of the small index, then one read
    per clip view into the output array, no intermediate copies. Only for the layout write_shard writes (inner
    chunks of one clip view, in any order); read() returns None where zarr must answer instead (a missing file or
    an unwritten chunk, which zarr reads as the fill value) and raises ValueError for a damaged shard, including a
    chunk that does not match its crc32c (stores with chunk checksums)."""

    def __init__(self, array, location: str):
        self.folder = Path(location) / array.path / "c"
        self.clips, self.views = array.shape[1:3]
        self.value_shape = tuple(array.shape[3:])  # [N, D]
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.chunk_bytes = int(np.prod(self.value_shape)) * self.dtype.itemsize
        self.depth = array.ndim - 1
        self.checksums = chunk_checksums(array)  # each chunk ends in its crc32c
        self.checked: set[tuple[int, int]] = set()  # (row, chunk) checked once in this process: later reads trust them

    @staticmethod
    def applies(array, location: str) -> bool:
        """The default layout, with one clip view per inner chunk."""
        return writes_whole_shards(array, location) and tuple(array.chunks) == (1, 1, 1, *array.shape[3:])

    def read(self, row: int, selection: tuple = (), out: np.ndarray | None = None) -> np.ndarray | None:
        """Values of video `row`: all [K, S, ...] (selection ()), one clip view (k, s) -> [...], or one view of
        every clip (slice(None), s) -> [K, ...]; None for selections or shards that zarr must read. `out` (C-contiguous,
        the array's dtype, as many values) receives them instead of a new array."""
        wanted = self._wanted(selection)
        if wanted is None:
            return None
        path = self.shard_path(row)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            entries = self._index(fd, path)
            shape = (len(wanted), *self.value_shape)
            out = np.empty(shape, dtype=self.dtype) if out is None else out.reshape(shape)
            crc = bytearray(4)
            expected = self.chunk_bytes + 4 * self.checksums
            for i, chunk in enumerate(wanted):
                offset, length = (int(v) for v in entries[chunk])
                if offset == EMPTY and length == EMPTY:
                    return None
                if length != expected:
                    raise ValueError(f"{path}: chunk {chunk} holds {length} bytes, not {expected}")
                target = memoryview(out[i]).cast("B")
                if os.preadv(fd, [target, crc] if self.checksums else [target], offset) != length:
                    raise ValueError(f"{path}: chunk {chunk} is cut short")
                if self.checksums and (row, chunk) not in self.checked:  # checking every read costs 1.4x a read
                    if google_crc32c.value(out[i]) != int.from_bytes(crc, "little"):
                        raise ValueError(f"{path}: chunk {chunk} does not match its checksum (damaged bytes)")
                    self.checked.add((row, chunk))
        finally:
            os.close(fd)
        if len(selection) < 2:
            return out.reshape(-1, self.views, *self.value_shape)  # [K, S, ...]
        return out if selection[0] == slice(None) else out[0]  # [K, ...] or [...]

    def shard_path(self, row: int) -> Path:
        """The file that holds every clip view of video `row`."""
        return self.folder / str(row) / Path(*(["0"] * self.depth))

    def _wanted(self, selection: tuple) -> list[int] | None:
        """Inner chunk numbers (k * S + s) of a selection, in output order; None for what zarr must resolve
        (other slices, negative or out-of-range indices)."""
        if selection == ():
            return list(range(self.clips * self.views))
        if len(selection) == 1 and isinstance(selection[0], slice) and selection[0].step in (None, 1):
            start, stop = selection[0].start or 0, selection[0].stop  # the first clips of a dense store's video
            if stop is None or not 0 <= start <= stop <= self.clips:
                return None
            return list(range(start * self.views, stop * self.views))
        if len(selection) != 2 or not isinstance(selection[1], (int, np.integer)):
            return None
        clip, view = selection
        if not 0 <= view < self.views:
            return None
        if clip == slice(None):
            return [k * self.views + int(view) for k in range(self.clips)]
        if isinstance(clip, (int, np.integer)) and 0 <= clip < self.clips:
            return [int(clip) * self.views + int(view)]
        return None

    def _index(self, fd: int, path: Path) -> np.ndarray:
        """The shard's (offset, length) pairs [K*S, 2], checked against their crc32c and the file's size."""
        count = self.clips * self.views
        size = os.fstat(fd).st_size
        index_bytes = 16 * count + 4
        raw = os.pread(fd, index_bytes, size - index_bytes) if size >= index_bytes else b""
        if len(raw) != index_bytes or google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise ValueError(f"{path}: the shard index does not match its checksum")
        entries = np.frombuffer(raw[:-4], dtype="<u8").reshape(count, 2)
        written = entries[:, 0] != EMPTY
        if np.any(entries[written, 0] + entries[written, 1] > size - index_bytes):
            raise ValueError(f"{path}: the shard index points past the end of the file")
        return entries
