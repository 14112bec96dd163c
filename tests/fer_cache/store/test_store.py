import subprocess
import sys

import numpy as np
import pytest
import zarr

from fer_cache.errors import StoreError, StoreMismatchError
from fer_cache.inputs.datasets import VideoItem
from fer_cache.store import Store, schema, writing
from tests.helpers import ATTRS_SMALL, new_store, small_videos, tokens

ATTRS = ATTRS_SMALL
videos = small_videos


@pytest.mark.parametrize("dtype,tolerance", [("float16", 2e-3), ("bfloat16", 1.6e-2), ("int8", 1.6e-2)])
def test_storage_dtypes_round_trip(tmp_path, dtype, tolerance):
    store = new_store(tmp_path, dtype=dtype)
    group = store.group
    values = tokens()
    writing.write_video(store, 1, values, frame_index=np.zeros((2, 4), np.int32), n_frames=40)
    stored, scale = store.read(1, "v1")
    back = schema.decode_tokens(stored, dtype, scale)
    assert np.abs(back - values).max() <= tolerance * np.abs(values).max()
    assert group["videos/status"][:].tolist() == [schema.PENDING, schema.DONE, schema.PENDING]


def test_layout_chunks_one_clip_view_each(tmp_path):
    layout = schema.Layout(videos=2, clips=3, views=3, tokens=4, width=6, frames_per_clip=5)
    group = writing.create_store(tmp_path / "s.zarr", layout, videos(2), attrs=ATTRS).group
    assert group["tokens"].chunks == (1, 1, 1, 4, 6) and group["tokens"].shards == (1, 3, 3, 4, 6)
    assert group["clips/frame_index"].chunks == (1, 3, 5)
    for name in ("videos/status", "videos/error", "videos/n_frames"):
        assert group[name].chunks == (1,)
    assert group.attrs["fer_cache_schema"] == 1 and "videos/split" not in group


def test_a_store_of_another_extraction_is_refused_naming_what_differs(tmp_path):
    store = new_store(tmp_path)
    changed = ATTRS | {"fingerprint": "g", "sampling": {"k": 4}}
    with pytest.raises(StoreMismatchError, match=r"extracted differently \(sampling.k 2 -> 4\)"):
        writing.reconcile(store, changed, videos=videos(3))
    with pytest.raises(StoreMismatchError, match="classes"):
        writing.reconcile(store, ATTRS | {"label_names": ["a", "b"]}, videos=videos(3))
    with pytest.raises(schema.StoreFormatError, match="no such store"):
        Store.open(tmp_path / "missing.zarr")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(schema.StoreFormatError, match="not a fer-cache store"):
        schema.check_schema(plain, "plain")


def test_a_grown_dataset_appends_and_keeps_every_encoded_video(tmp_path):
    store = new_store(tmp_path, n=3)
    group = store.group
    for row in range(3):
        writing.write_video(store, row, tokens(row), frame_index=np.full((2, 4), row, np.int32), n_frames=40)
    before = group["tokens"][:]
    grown = videos(1, start=7) + videos(3)[::-1] + videos(2, start=3)  # another order, three new videos
    result = writing.reconcile(store, ATTRS, videos=grown)
    assert (result.added, result.repaired) == (3, 0)
    assert schema.read_strings(group["videos/id"]) == ["v0", "v1", "v2", "v7", "v3", "v4"]
    assert result.rows == [3, 2, 1, 0, 4, 5]
    assert group["videos/status"][:].tolist() == [schema.DONE] * 3 + [schema.PENDING] * 3
    assert np.array_equal(group["tokens"][:3], before)
    assert group["tokens"].shape[0] == group["videos/label"].shape[0] == group["clips/frame_index"].shape[0] == 6
    assert group["videos/label"][:].tolist()[3:] == [7 % 3, 0, 1]
    again = writing.reconcile(store, ATTRS, videos=grown)
    assert again.added == 0 and again.rows == result.rows


def test_metadata_follows_the_dataset_and_lost_chunks_are_queued_again(tmp_path):
    store = new_store(tmp_path, n=3)
    group = store.group
    for row in range(3):
        writing.write_video(store, row, tokens(row), frame_index=np.zeros((2, 4), np.int32), n_frames=40)
    relabelled = videos(3)
    relabelled[1] = VideoItem(id="v1", path="a/v1.mp4", label=2, label_name="c", subject="9")
    next(p for p in (tmp_path / "s.zarr" / "tokens" / "c" / "2").rglob("*") if p.is_file()).unlink()
    result = writing.reconcile(store, ATTRS, videos=relabelled)
    assert (result.relabelled, result.repaired) == (1, 1)
    assert group["videos/label"][1] == 2 and schema.read_strings(group["videos/subject"])[1] == "9"
    assert group["videos/status"][:].tolist() == [schema.DONE, schema.DONE, schema.PENDING]


def test_lock_refuses_a_second_writer_and_is_removed_after(tmp_path):
    with writing.StoreLock(tmp_path / "s.zarr"):
        assert (tmp_path / "s.zarr.lock").is_file()
        with pytest.raises(StoreError, match="another extraction"):
            with writing.StoreLock(tmp_path / "s.zarr"):
                pass
    assert not (tmp_path / "s.zarr.lock").exists()
    with writing.StoreLock(tmp_path / "s.zarr"):  # released after use
        pass


def test_the_command_line_tuning_stops_numpy_asking_for_huge_pages():
    """With glibc serving large blocks from its heap (tune_process), numpy's huge-page advice on each large array
    made fresh arrays 15-20x slower to fault in on the project's machine: tune_process turns it off, in its own
    process as the command-line tools do."""
    code = ("import numpy as np; from fer_cache.store import tune_process; tune_process(); "
            "core = getattr(np, '_core', None) or np.core; print(core.multiarray._set_madvise_hugepage(True))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
