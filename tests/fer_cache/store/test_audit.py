"""Looking at a finished store: info counts and sizes, verify names each problem, export keeps every array."""

import numpy as np

from fer_cache.store import schema, writing
from fer_cache.store.audit import export_h5, store_info, verify_store
from tests.helpers import ATTRS_SMALL, small_videos


def three_videos(path):
    layout = schema.Layout(videos=3, clips=2, views=1, tokens=5, width=8, frames_per_clip=4)
    store = writing.create_store(path, layout, small_videos(3), attrs=ATTRS_SMALL)
    values = np.random.default_rng(0).standard_normal((2, 1, 5, 8)).astype(np.float32)
    writing.write_video(store, 0, values, frame_index=np.zeros((2, 4), np.int32), n_frames=3)
    writing.mark_failed(store, 2, "cannot decode: moov atom not found")
    return store


def test_info_counts_statuses_sizes_and_short_videos(tmp_path):
    three_videos(tmp_path / "s.zarr")
    info = store_info(str(tmp_path / "s.zarr"))
    assert info.counts == {"videos": 3, "pending": 1, "done": 1, "failed": 1}
    assert info.shape == (3, 2, 1, 5, 8) and info.dtype == "float16"
    assert info.bytes_per_clip > 5 * 8 * 2  # at least the values of one clip view
    assert info.padding["shorter_than_a_clip"] == 0  # no sampling attributes: a span of one frame


def test_verify_names_each_problem(tmp_path):
    store = three_videos(tmp_path / "s.zarr")
    report = verify_store(str(tmp_path / "s.zarr"))
    problems = " | ".join(report.problems)
    assert not report.ok
    assert "1 of 3 videos pending (not extracted; rerun extract to resume): v1" in problems
    assert "video v2: failed (cannot decode: moov atom not found)" in problems
    assert "attributes missing" in problems  # the small attrs lack dataset/encoder/...: named, not a crash
    bad = np.full((2, 1, 5, 8), np.inf, dtype=np.float32)
    writing.write_video(store, 1, bad, frame_index=np.zeros((2, 4), np.int32), n_frames=3)
    assert any("v1: 80 non-finite" in p for p in verify_store(str(tmp_path / "s.zarr")).problems)


def test_export_keeps_every_array(tmp_path):
    import h5py

    store = three_videos(tmp_path / "s.zarr")
    assert export_h5(str(tmp_path / "s.zarr"), tmp_path / "s.h5") == 3
    with h5py.File(tmp_path / "s.h5") as f:
        assert np.array_equal(f["tokens"][:], store.group["tokens"][:])
        assert [s.decode() for s in f["videos/id"][:]] == ["v0", "v1", "v2"]
        assert f["videos/status"][:].tolist() == [schema.DONE, schema.PENDING, schema.FAILED]
