"""Killed, stopped and doubled extractions: resuming gives exactly an uninterrupted run's store.

Interruptions are deterministic: tests/extract_with_fault.py makes the extraction signal itself right after committing a
chosen number of videos, so every case is one exact point of the run, not a guessed delay."""

import signal

import numpy as np
import pytest
import zarr

from fer_cache.store import schema, writing
from tests.helpers import extract_process, write_config

VIDEOS = 24  # the small demo set


def contents(store):
    group = zarr.open_group(str(store), mode="r")
    return (schema.read_strings(group["videos/id"]), group["tokens"][:], group["videos/status"][:],
            group["clips/frame_index"][:], group["videos/n_frames"][:])


def assert_same_as_reference(store, reference):
    ids, tokens, status, frame_index, n_frames = contents(store)
    ref_ids, ref_tokens, _, ref_frame_index, ref_n_frames = contents(reference)
    assert ids == ref_ids  # no video lost, none duplicated
    assert (status == schema.DONE).all()
    assert np.array_equal(tokens, ref_tokens)
    assert np.array_equal(frame_index, ref_frame_index) and np.array_equal(n_frames, ref_n_frames)


def done(store) -> int:
    return int((zarr.open_group(str(store), mode="r")["videos/status"][:] == schema.DONE).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sigkill_at_chosen_points_then_resume(tmp_path, demo_small, reference_store, seed):
    """Killed twice (the resumed run killed as well) at points drawn from the seed, then finished."""
    first, second = (int(n) for n in np.random.default_rng(seed).integers(1, VIDEOS // 2, size=2))
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "killed.zarr"
    code, _ = extract_process(config, store, fault=f"{first}:KILL", workers="1")
    assert code == -signal.SIGKILL and done(store) == first
    code, _ = extract_process(config, store, fault=f"{second}:KILL", workers="1")
    assert code == -signal.SIGKILL and done(store) == first + second
    code, output = extract_process(config, store, workers="1")
    assert code == 0, output
    assert_same_as_reference(store, reference_store)
    assert not store.with_name(store.name + ".partial").exists()


@pytest.mark.parametrize("seed,sig", [(0, "TERM"), (1, "INT")])
def test_sigterm_or_ctrl_c_stops_after_the_current_write(tmp_path, demo_small, reference_store, seed, sig):
    point = int(np.random.default_rng(seed + 10).integers(1, VIDEOS - 4))
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "stopped.zarr"
    code, output = extract_process(config, store, fault=f"{point}:{sig}", workers="1")
    assert code == 130, output
    assert "Traceback" not in output and "rerun the same command to resume" in output
    assert point <= done(store) < VIDEOS
    code, output = extract_process(config, store, workers="1")
    assert code == 0, output
    assert_same_as_reference(store, reference_store)


def test_a_held_store_turns_a_second_extraction_away(tmp_path, demo_small, reference_store):
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "double.zarr"
    with writing.StoreLock(store):
        code, output = extract_process(config, store)
    assert code == 1 and "another extraction" in output and not store.exists()
    code, output = extract_process(config, store)
    assert code == 0, output
    assert_same_as_reference(store, reference_store)
    assert not store.with_name(store.name + ".lock").exists()  # removed when the run ended cleanly
    code, output = extract_process(config, store)
    assert code == 0 and "this run encoded 0 videos" in " ".join(output.split())


def test_a_full_disk_keeps_the_finished_videos_says_so_and_the_resume_is_exact(tmp_path, demo_small, reference_store,
                                                                               monkeypatch):
    """Before: 'writing the store failed: OSError: [Errno 28]', no path, no word on what was kept, and a *.partial
    shard left in the store after the resume (issue 33, case 12). The disk fills up after 5 videos, mid-shard."""
    import errno

    from typer.testing import CliRunner

    from fer_cache.cli import app
    from fer_cache.store import shards
    real, calls = shards.write_direct, []

    def fills_up(path, data):
        calls.append(path)
        if len(calls) <= 5:
            return real(path, data)
        path.write_bytes(bytes(data[:100]))  # what fitted before the disk was full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards, "write_direct", fills_up)
    config, store = write_config(tmp_path, demo_small), tmp_path / "s.zarr"
    command = ["extract", "--dataset", "demo", "--encoder", "tiny", "--out", str(store), "--config", str(config),
               "--workers", "0", "--batch-size", "3"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.strip()
    assert message == (f"error: no space left while writing {store}: 5 of {VIDEOS} videos are saved; free space and "
                       "rerun the same command to resume"), message
    assert not list(store.rglob("*.partial")) and done(store) == 5
    monkeypatch.setattr(shards, "write_direct", real)  # space was freed
    assert CliRunner().invoke(app, command).exit_code == 0
    assert_same_as_reference(store, reference_store)


def test_a_resumed_extraction_removes_a_killed_runs_half_written_shards(tmp_path, demo_small, reference_store):
    config, store = write_config(tmp_path, demo_small), tmp_path / "s.zarr"
    code, output = extract_process(config, store, fault="4:KILL")
    assert code == -signal.SIGKILL, output
    stale = store / "tokens" / "c" / "9" / "0" / "0" / "0" / "0.123.partial"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\0" * 100)  # what a kill -9 in the middle of write_shard leaves
    code, output = extract_process(config, store)
    assert code == 0, output
    assert not stale.exists()
    assert_same_as_reference(store, reference_store)
