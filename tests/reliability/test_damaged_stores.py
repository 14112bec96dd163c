"""Damaged stores: verify names each problem; the probe refuses instead of training on garbage."""

import json
import shutil

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from fer_cache.cli import app
from fer_cache.store import schema
from fer_probe.cli import app as probe_app
from fer_probe.data.reader import CacheReader
from fer_probe.errors import StoreReadError

runner = CliRunner()


def damaged(tmp_path, reference_store, damage):
    store = tmp_path / "d.zarr"
    shutil.copytree(reference_store, store)
    video = damage(store)
    return store, video


def poke(store, index, value):
    group = zarr.open_group(str(store), mode="r+")
    values = group["tokens"][index]
    values[0, 0, 2, 3] = value
    group["tokens"][index] = values
    return schema.read_strings(group["videos/id"])[index]


def chunk_file(store, index):
    return next(p for p in (store / "tokens" / "c" / str(index)).rglob("*") if p.is_file())


def truncate_chunk(store):
    path = chunk_file(store, 4)
    path.write_bytes(path.read_bytes()[:100])
    return schema.read_strings(zarr.open_group(str(store), mode="r")["videos/id"])[4]


def delete_chunk(store):
    chunk_file(store, 7).unlink()
    return schema.read_strings(zarr.open_group(str(store), mode="r")["videos/id"])[7]


def tamper(store):
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["encoder"]["resolution"] = 384
    (store / "zarr.json").write_text(json.dumps(meta))
    return "fingerprint"


@pytest.mark.parametrize("damage,needle", [
    (lambda s: poke(s, 2, np.nan), "non-finite"),
    (lambda s: poke(s, 3, np.inf), "non-finite"),
    (truncate_chunk, "unreadable"),
    (delete_chunk, "missing"),
    (tamper, "edited"),
])
def test_verify_names_each_problem(tmp_path, reference_store, damage, needle):
    store, video = damaged(tmp_path, reference_store, damage)
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 3, result.output
    assert needle in result.output and video in result.output
    assert "Traceback" not in result.output


def test_probe_refuses_non_finite_tokens(tmp_path, reference_store):
    store, video = damaged(tmp_path, reference_store, lambda s: poke(s, 5, np.nan))
    reader = CacheReader(store)
    with pytest.raises(StoreReadError, match=f"{video} has non-finite"):
        reader.video(5)


def test_the_probe_refuses_a_store_whose_done_videos_lost_their_chunks(tmp_path, reference_store):
    """Before: a deleted chunk read back as zeros and trained silently."""
    store, video = damaged(tmp_path, reference_store, delete_chunk)
    with pytest.raises(StoreReadError, match=f"1 video.*marked done have no token chunks: {video}.*fer-cache extract"):
        CacheReader(store)
    probe = CliRunner().invoke(probe_app, ["cv", str(store), "--out", str(tmp_path / "run")])
    assert probe.exit_code == 1 and video in probe.stderr and "\n" not in probe.stderr.strip()


def test_a_chunk_that_does_not_decode_names_its_video(tmp_path, reference_store):
    """Before: a bare ValueError (a traceback in the CLI)."""
    store, video = damaged(tmp_path, reference_store, truncate_chunk)
    reader = CacheReader(store)
    with pytest.raises(StoreReadError, match=f"the tokens of video {video} do not decode.*re-encode"):
        reader.video(4)
    probe = CliRunner().invoke(probe_app, ["cv", str(store), "--out", str(tmp_path / "run")])
    assert probe.exit_code == 1 and video in probe.stderr and "Traceback" not in probe.output
