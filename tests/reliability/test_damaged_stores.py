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
from tests.helpers import write_config

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


def zero_bytes(store):
    """4 KB of zeros inside a finished video's shard: finite values, an untouched index (issue 33, case 2)."""
    path = chunk_file(store, 5)
    data = bytearray(path.read_bytes())
    assert len(data) > 64 + 4096 + 16 * 2 + 4  # the index at the end stays as it was
    data[64:64 + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    return schema.read_strings(zarr.open_group(str(store), mode="r")["videos/id"])[5]


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
    (zero_bytes, "unreadable"),
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


@pytest.mark.parametrize("damage", [lambda s: poke(s, 2, np.nan), truncate_chunk])
def test_verify_repair_queues_damaged_videos_and_the_extraction_restores_them(tmp_path, reference_store, demo_small,
                                                                              damage):
    """Before: verify named no file, gave a NaN video no advice, and a rerun of extract said '24/24 done, encoded 0'
    and changed nothing while verify still failed."""
    store, video = damaged(tmp_path, reference_store, damage)
    row = schema.read_strings(zarr.open_group(str(store), mode="r")["videos/id"]).index(video)
    config = write_config(tmp_path, demo_small)
    command = ["extract", "--dataset", "demo", "--encoder", "tiny", "--out", str(store), "--config", str(config),
               "--workers", "0", "--batch-size", "3"]
    stale = runner.invoke(app, command)
    assert stale.exit_code == 0 and "nothing to encode: every video is marked done" in stale.output
    found = runner.invoke(app, ["verify", str(store)])
    assert found.exit_code == 3 and f"{store}/tokens/c/{row}" in found.output and "--repair" in found.output
    repaired = runner.invoke(app, ["verify", str(store), "--repair"])
    assert repaired.exit_code == 3 and "1 damaged videos marked pending" in repaired.output
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "encoded 1 videos" in again.output, again.output
    assert runner.invoke(app, ["verify", str(store)]).exit_code == 0
    restored, reference = (zarr.open_group(str(s), mode="r")["tokens"][row] for s in (store, reference_store))
    assert np.array_equal(restored, reference)  # exactly what an uninterrupted extraction wrote


def edit_labels(store, names):
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["label_names"] = names
    (store / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("names,needle", [
    (lambda names: [names[0], names[3], names[2], names[1], *names[4:]], "edited after extraction"),
    (lambda names: "neutral,calm", "must be a list of class names, got 'neutral,calm'"),
    (lambda names: [names[0], *names[:-1]], "name a class twice"),
])
def test_hand_edited_label_names_are_refused_wherever_the_store_is_opened(tmp_path, reference_store, names, needle):
    """Before: swapped names trained silently, and a string became the classes ['n', 'u', 't', 'r', 'a', 'l']."""
    store = tmp_path / "e.zarr"
    shutil.copytree(reference_store, store)
    edit_labels(store, names(zarr.open_group(str(store), mode="r").attrs["label_names"]))
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 3 and needle in result.output
    with pytest.raises(StoreReadError, match=needle):
        CacheReader(store)
    probe = runner.invoke(probe_app, ["cv", str(store), "--out", str(tmp_path / "run")])
    assert probe.exit_code == 1 and needle in probe.stderr and "\n" not in probe.stderr.strip()


def test_zeroed_bytes_are_refused_by_the_probe_and_verify_says_what_it_checked(tmp_path, reference_store,
                                                                               planted_store):
    store, video = damaged(tmp_path, reference_store, zero_bytes)
    probe = runner.invoke(probe_app, ["cv", str(store), "--out", str(tmp_path / "run")])
    assert probe.exit_code == 1 and video in probe.stderr and "\n" not in probe.stderr.strip()
    clean = runner.invoke(app, ["verify", str(reference_store)])
    assert clean.exit_code == 0 and "each chunk against its checksum" in clean.output
    older = runner.invoke(app, ["verify", str(planted_store)])  # written without chunk checksums
    assert "no chunk checksums" in older.output and "each chunk against its checksum" not in older.output
