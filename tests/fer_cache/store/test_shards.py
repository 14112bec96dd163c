"""The direct shard writer and reader against zarr's own sharding codec."""

import numpy as np
import pytest

from fer_cache.inputs.datasets import VideoItem
from fer_cache.store import Store, schema, shards, writing

ATTRS = {"fingerprint": "f", "label_names": ["a", "b", "c"], "encoder": {"embed_dim": 8}, "sampling": {"k": 2},
         "storage": {"dtype": "float16"}, "token_grid": [1, 1, 5]}


def videos(n):
    return [VideoItem(id=f"v{i}", path=f"a/v{i}.mp4", label=i % 3, label_name="x",
                      subject=str(i % 2 + 1)) for i in range(n)]


def written_store(path, *, dtype="float16", views=1, direct=True, compressor="none"):
    """Two videos of 3 clips x `views` views of [5, 8], video 1 written (straight to its shard, or through zarr)."""
    layout = schema.Layout(videos=2, clips=3, views=views, tokens=5, width=8, frames_per_clip=4, dtype=dtype,
                           compressor=compressor)
    store = writing.create_store(path, layout, videos(2), attrs=ATTRS)
    values = np.random.default_rng(0).standard_normal((3, views, 5, 8)).astype(np.float32)
    writing.write_video(store if direct else Store(store.group, path, direct=False), 1, values,
                   frame_index=np.zeros((3, 4), np.int32), n_frames=40)
    return store.group


@pytest.mark.parametrize("dtype,views", [("float16", 1), ("int8", 3)])
def test_shards_written_directly_are_what_zarr_writes(tmp_path, dtype, views):
    """The fast shard writer (straight to the file, O_DIRECT where it can) against zarr's own codec pipeline."""
    stores = {}
    for how in ("zarr", "direct"):
        location = tmp_path / f"{how}.zarr"
        layout = schema.Layout(videos=2, clips=2, views=views, tokens=5, width=8, frames_per_clip=4, dtype=dtype)
        store = writing.create_store(location, layout, videos(2), attrs=ATTRS)
        values = np.random.default_rng(0).standard_normal((2, views, 5, 8)).astype(np.float32)
        writing.write_video(Store(store.group, location, direct=how == "direct"), 1, values,
                       frame_index=np.zeros((2, 4), np.int32), n_frames=40)
        stores[how] = (location, store.group)
    (zarr_path, zarr_group), (direct_path, direct_group) = stores["zarr"], stores["direct"]
    assert shards.writes_whole_shards(direct_group["tokens"], str(direct_path))
    for name in ("tokens", "tokens_scale") if dtype == "int8" else ("tokens",):
        assert shards.chunk_checksums(direct_group[name])  # each chunk carries its crc32c, as zarr's codec lays out
        shard = next(p for p in (zarr_path / name / "c" / "1").rglob("*") if p.is_file()).relative_to(zarr_path)
        ours, theirs = (chunk_bytes(path / shard, 2 * views) for path in (direct_path, zarr_path))
        if views == 1:  # one clip view a clip: zarr's (Morton) chunk order is C order, so every chunk is identical
            assert ours == theirs, name  # (our file pads chunks to page boundaries for O_DIRECT; the index skips it)
        assert np.array_equal(direct_group[name][1], zarr_group[name][1])
        assert np.array_equal(direct_group[name][1, 1, views - 1], zarr_group[name][1, 1, views - 1])  # one chunk
    aligned = shards.aligned_empty((3, 4096), np.float16)
    assert aligned.ctypes.data % 4096 == 0 and aligned.shape == (3, 4096)


def chunk_bytes(path, count: int) -> list[bytes]:
    """Each inner chunk's bytes (values and crc32c) where the shard's index says they are."""
    data = path.read_bytes()
    index = np.frombuffer(data[-(16 * count + 4):-4], dtype="<u8").reshape(count, 2)
    return [data[int(offset):int(offset + length)] for offset, length in index]


def test_stores_written_before_chunk_checksums_keep_their_layout_byte_for_byte(tmp_path):
    """A store created without chunk checksums (as every store was before them) is still written straight to its
    shard files, byte for byte what zarr writes, and read back without a checksum to check."""
    import zarr
    files = {}
    for how in ("zarr", "direct"):
        location = tmp_path / f"{how}.zarr"
        group = zarr.open_group(str(location), mode="w")
        array = group.create_array("tokens", shape=(2, 3, 1, 5, 8), chunks=(1, 1, 1, 5, 8), shards=(1, 3, 1, 5, 8),
                                   dtype="float16", fill_value=0, compressors=None)
        values = np.random.default_rng(0).standard_normal((3, 1, 5, 8)).astype(np.float16)
        if how == "zarr":
            array[1] = values
        else:
            assert shards.writes_whole_shards(array, str(location)) and not shards.chunk_checksums(array)
            shards.write_shard(array, str(location), "tokens", row=1, values=values)
        files[how] = (location / "tokens" / "c" / "1" / "0" / "0" / "0" / "0").read_bytes()
        reader = shards.ShardReader(array, str(location))
        assert not reader.checksums and np.array_equal(reader.read(1), values)
    assert files["direct"] == files["zarr"]


def test_damaged_bytes_that_stay_finite_are_caught_by_the_chunk_checksum(tmp_path):
    """Before: zeroing bytes inside a finished video's shard passed verify, info and cv (issue 33, case 2)."""
    location = tmp_path / "s.zarr"
    group = written_store(location)
    shard = next(p for p in (location / "tokens" / "c" / "1").rglob("*") if p.is_file())
    data = bytearray(shard.read_bytes())
    data[20:60] = bytes(40)  # zeros: finite values, the index untouched
    shard.write_bytes(bytes(data))
    with pytest.raises(schema.StoreFormatError, match="v1 do not decode.*checksum|v1 do not decode"):
        Store(group, location).read(1, "v1")
    with pytest.raises(ValueError, match="does not match its checksum"):
        Store(group, location).direct.read(1, (0, 0))
    with pytest.raises(Exception, match="checksum"):
        group["tokens"][1]  # zarr's own crc32c codec agrees


SELECTIONS = [(), (0, 0), (2, 0), (slice(None), 0), (np.int64(1), np.int64(0))]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
@pytest.mark.parametrize("direct,views", [(True, 1), (False, 1), (False, 3), (True, 3)])
def test_direct_reads_equal_zarr(tmp_path, dtype, direct, views):
    """Every selection the reader makes, from shards written by write_shard and by zarr itself (which orders the
    inner chunks differently when a clip has several views)."""
    location = tmp_path / "s.zarr"
    group = written_store(location, dtype=dtype, views=views, direct=direct)
    arrays = Store(group, location)
    assert arrays.direct is not None
    for selection in SELECTIONS + ([(1, views - 1), (slice(None), views - 1)] if views > 1 else []):
        fast = arrays.direct.read(1, selection)
        assert fast is not None and fast.dtype == group["tokens"].dtype
        assert np.array_equal(fast, group["tokens"][(1, *selection)]), selection
        if dtype == "int8":  # and their per-token scales, from their own shards
            scale = arrays.direct_scales["tokens"].read(1, selection)
            assert scale is not None and np.array_equal(scale, group["tokens_scale"][(1, *selection)]), selection
            assert np.array_equal(arrays.read(1, "v1", selection)[1], scale)


def test_unwritten_videos_and_other_layouts_fall_back_to_zarr(tmp_path):
    location = tmp_path / "s.zarr"
    group = written_store(location)
    arrays = Store(group, location)
    assert arrays.direct.read(0, ()) is None  # no shard file: zarr answers (the fill value)
    assert arrays.direct.read(1, (slice(0, 2), 0)) is None  # selections it does not take
    assert arrays.direct.read(1, (0, -1)) is None and arrays.direct.read(1, (-1, 0)) is None
    assert Store(group, location, direct=False).direct is None  # reads through zarr asked for
    compressed = tmp_path / "z.zarr"
    zgroup = written_store(compressed, compressor="zstd")
    assert Store(zgroup, compressed).direct is None
    stored, _ = Store(zgroup, compressed).read(1, "v1")
    assert np.array_equal(stored, zgroup["tokens"][1])


@pytest.mark.parametrize("damage", ["index", "truncated"])
def test_damaged_shards_name_the_video(tmp_path, damage):
    location = tmp_path / "s.zarr"
    group = written_store(location)
    shard = next(p for p in (location / "tokens" / "c" / "1").rglob("*") if p.is_file())
    data = bytearray(shard.read_bytes())
    if damage == "index":
        data[-10] ^= 0xFF  # an offset of the index no longer matches its checksum
    else:
        data = data[:100] + data[-(16 * 3 + 4):]  # chunks cut away, the index kept
    shard.write_bytes(bytes(data))
    with pytest.raises(schema.StoreFormatError, match="v1.*do not decode.*verify .* --repair"):
        Store(group, location).read(1, "v1", (2, 0))


def test_the_batch_encoders_buffer_gets_its_checksums_in_place_and_other_values_are_copied():
    """The writer hands out memory laid out as the checksummed shard (page-aligned chunks with room for a crc32c),
    so writing a video adds four bytes per chunk instead of copying 94 MB (benchmarks/bench_checksums.py)."""
    import google_crc32c
    buffer = shards.chunked_empty((3, 1, 5, 8), np.float16)
    buffer[...] = np.random.default_rng(0).standard_normal((3, 1, 5, 8))
    data, length = shards.with_checksums(buffer, 3, np.dtype("<f2"))
    assert np.shares_memory(data, buffer) and data.shape == (3, 4096) and length == 5 * 8 * 2 + 4
    assert data.ctypes.data % 4096 == 0
    for i in range(3):
        assert int.from_bytes(data[i, 80:84].tobytes(), "little") == google_crc32c.value(buffer[i, 0].tobytes())
        assert not data[i, 84:].any()  # padding zeroed: equal values, equal files
    plain = np.ascontiguousarray(buffer)
    copied, _ = shards.with_checksums(plain, 3, np.dtype("<f2"))
    assert not np.shares_memory(copied, plain) and np.array_equal(copied, data)


@pytest.mark.parametrize("size", [0, 100, shards.PAGE, 3 * shards.PAGE + 17])
def test_write_file_writes_every_byte_and_replaces_the_old_file(tmp_path, size):
    """The page-aligned bulk goes past the page cache and the tail is appended: the file holds exactly the bytes,
    whatever their length, in place of what was there, and no partial file is left."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"old" * 5000)
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    shards.write_file(path, data)
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_write_file_that_fails_leaves_the_old_file_and_no_partial(tmp_path, monkeypatch):
    """A full disk while writing: the previous file stays whole and no half-written file is left behind."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(shards, "write_direct", full_disk)
    with pytest.raises(OSError, match="No space"):
        shards.write_file(path, bytes(3 * shards.PAGE))
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]
