"""Killed, stopped and doubled extractions: resuming gives exactly an uninterrupted run's store."""

import signal
import subprocess
import time

import numpy as np
import pytest
import zarr

from fer_cache import store as st
from tests.conftest import BIN, write_config
from tests.fer_cache.test_extract import reference_store  # noqa: F401  (module fixture)


def command(config, store, batch="3"):
    return [str(BIN / "fer-cache"), "extract", "--dataset", "demo", "--encoder", "tiny", "--out", str(store),
            "--config", str(config), "--workers", "1", "--batch-size", batch]


def contents(store):
    group = zarr.open_group(str(store), mode="r")
    return (st.read_strings(group["videos/id"]), group["tokens"][:], group["videos/status"][:],
            group["clips/frame_index"][:], group["videos/n_frames"][:])


def assert_same_as_reference(store, reference):
    ids, tokens, status, frame_index, n_frames = contents(store)
    ref_ids, ref_tokens, _, ref_frame_index, ref_n_frames = contents(reference)
    assert ids == ref_ids  # no video lost, none duplicated
    assert (status == st.DONE).all()
    assert np.array_equal(tokens, ref_tokens)
    assert np.array_equal(frame_index, ref_frame_index) and np.array_equal(n_frames, ref_n_frames)


def interrupt(cmd, sig, delay):
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sigkill_at_random_points_then_resume(tmp_path, demo_small, reference_store, seed):  # noqa: F811
    rng = np.random.default_rng(seed)
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "killed.zarr"
    for delay in rng.uniform(0.5, 5.0, size=2):  # killed twice: the resumed run is killed as well
        interrupt(command(config, store), signal.SIGKILL, float(delay))
    finished = subprocess.run(command(config, store), capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert_same_as_reference(store, reference_store)
    assert not store.with_name(store.name + ".partial").exists()


@pytest.mark.parametrize("seed", [0, 1])
def test_sigterm_stops_after_the_current_write(tmp_path, demo_small, reference_store, seed):  # noqa: F811
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "stopped.zarr"
    delay = float(np.random.default_rng(seed + 10).uniform(2.0, 4.0))
    code, output = interrupt(command(config, store), signal.SIGTERM, delay)
    assert "Traceback" not in output
    assert code in (0, 3, -signal.SIGTERM)  # finished, stopped cleanly, or stopped before the handler existed
    if code == 3:
        assert "rerun the same command to resume" in output
    finished = subprocess.run(command(config, store), capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert_same_as_reference(store, reference_store)


def test_two_extractions_of_one_store(tmp_path, demo_small):
    # a heavier extraction than the other tests', so that the first run is still writing when the second starts
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("clips_per_video: 2", "clips_per_video: 12")
                      .replace("depth: 1", "depth: 4"))
    store = tmp_path / "double.zarr"
    first = subprocess.Popen(command(config, store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (store / "zarr.json").exists() and time.time() < deadline:
        time.sleep(0.01)
    second = subprocess.run(command(config, store), capture_output=True, text=True, timeout=120)
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    # Usually the second meets the first's lock and refuses; on a slow machine the first may have released it
    # already, and the second then finds a complete store. Either way nothing is written twice.
    assert second.returncode in (0, 1), second.stdout + second.stderr
    if second.returncode == 1:
        assert "another extraction" in second.stderr and "\n" not in second.stderr.strip()
    with st.StoreLock(store):  # and, deterministically, a held lock always turns an extraction away
        held = subprocess.run(command(config, store), capture_output=True, text=True, timeout=120)
    assert held.returncode == 1 and "another extraction" in held.stderr
    clean = tmp_path / "clean.zarr"
    assert subprocess.run(command(config, clean), capture_output=True, timeout=120).returncode == 0
    assert_same_as_reference(store, clean)
    again = subprocess.run(command(config, store), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "this run encoded 0 videos" in " ".join(again.stdout.split())
