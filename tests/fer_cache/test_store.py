import numpy as np
import pytest
import zarr

from fer_cache import store as st
from fer_cache.datasets import VideoItem
from fer_cache.errors import StoreError, StoreMismatchError


def videos(n):
    return [VideoItem(f"v{i}", f"a/v{i}.mp4", i % 3, "x", str(i % 2 + 1)) for i in range(n)]


@pytest.mark.parametrize("dtype,tolerance", [("float16", 2e-3), ("bfloat16", 1.6e-2), ("int8", 1.6e-2)])
def test_storage_dtypes_round_trip(tmp_path, dtype, tolerance):
    layout = st.Layout(3, 2, 1, 5, 8, 4, dtype=dtype)
    group = st.create_store(tmp_path / "s.zarr", layout, videos(3), {"fingerprint": "f"})
    tokens = np.random.default_rng(0).standard_normal((2, 1, 5, 8)).astype(np.float32)
    st.write_video(group, 1, tokens, np.zeros((2, 4), np.int32), 40)
    scale = group["tokens_scale"][1] if dtype == "int8" else None
    back = st.decode_tokens(group["tokens"][1], dtype, scale)
    assert np.abs(back - tokens).max() <= tolerance * np.abs(tokens).max()
    assert group["videos/status"][:].tolist() == [st.PENDING, st.DONE, st.PENDING]


def test_layout_chunks_one_clip_view_each(tmp_path):
    layout = st.Layout(2, 3, 3, 4, 6, 5)
    group = st.create_store(tmp_path / "s.zarr", layout, videos(2), {"fingerprint": "f"})
    assert group["tokens"].chunks == (1, 1, 1, 4, 6) and group["tokens"].shards == (1, 3, 3, 4, 6)
    assert group["clips/frame_index"].chunks == (1, 3, 5)
    for name in ("videos/status", "videos/error", "videos/n_frames"):
        assert group[name].chunks == (1,)
    assert group.attrs["fer_cache_schema"] == 1


def test_fingerprint_is_canonical():
    a = st.fingerprint({"x": 1, "y": [1, 2]}, {"s": 1}, {"dtype": "float16"}, [1, 2, 3])
    b = st.fingerprint({"y": [1, 2], "x": 1}, {"s": 1}, {"dtype": "float16"}, [1, 2, 3])
    assert a == b and a != st.fingerprint({"x": 2, "y": [1, 2]}, {"s": 1}, {"dtype": "float16"}, [1, 2, 3])


def test_mismatch_and_not_a_store(tmp_path):
    group = st.create_store(tmp_path / "s.zarr", st.Layout(2, 1, 1, 2, 2, 2), videos(2), {"fingerprint": "aaa"})
    with pytest.raises(StoreMismatchError, match="aaa.*bbb"):
        st.ensure_compatible(group, "s", "bbb", videos(2))
    with pytest.raises(StoreMismatchError, match="different"):
        st.ensure_compatible(group, "s", "aaa", videos(3))
    with pytest.raises(StoreError, match="no such store"):
        st.open_group(tmp_path / "missing.zarr", "r")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a fer-cache store"):
        st.check_schema(plain, "plain")


def test_writer_never_commits_non_finite_tokens(tmp_path):
    from fer_cache.batching import Finished, Writer
    group = st.create_store(tmp_path / "s.zarr", st.Layout(2, 1, 1, 3, 4, 2), videos(2), {"fingerprint": "f"})
    writer = Writer(group)
    writer.start()
    good = np.ones((1, 1, 3, 4), np.float32)
    bad = good.copy()
    bad[0, 0, 1, 2] = np.inf
    writer.put(Finished(0, good, np.zeros((1, 2), np.int32), 5))
    writer.put(Finished(1, bad, np.zeros((1, 2), np.int32), 5))
    writer.close()
    assert group["videos/status"][:].tolist() == [st.DONE, st.FAILED]
    assert "non-finite" in st.read_strings(group["videos/error"])[1]


def test_lock_refuses_a_second_writer(tmp_path):
    with st.StoreLock(tmp_path / "s.zarr"):
        with pytest.raises(StoreError, match="another extraction"):
            with st.StoreLock(tmp_path / "s.zarr"):
                pass
    with st.StoreLock(tmp_path / "s.zarr"):  # released after use
        pass
