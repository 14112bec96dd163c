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
