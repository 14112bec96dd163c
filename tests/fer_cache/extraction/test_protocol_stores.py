"""The paper's protocol from a cache at extraction: augmented training copies beside the clean tokens, a dense store
of every clip start with each video its own clip count, both resumable after a kill; the paper preset; what scan
says they cost (issue 32)."""

import signal

import numpy as np
import pytest
import zarr

from fer_cache.config import load_config
from fer_cache.errors import ConfigError
from fer_cache.store import Store, schema
from tests.helpers import assert_one_line_error, extract_process, run, tree_digest

pytest.importorskip("kornia")


def test_a_store_with_copies_holds_clean_tokens_and_distinct_augmented_copies(protocol_stores):
    _, train, _ = protocol_stores
    store = Store.open(train)
    V, K, S, N, D = store.tokens.shape
    assert store.group["augmented"].shape == (V, K, 2, N, D) and store.copies == 2 and not store.dense
    augment = store.attrs["sampling"]["augment"]
    assert augment["copies"] == 2 and augment["seed"] == 0 and augment["erasing"]["per_frame"]
    clean, _ = store.read(0, "v")
    copies, _ = store.read(0, "v", array="augmented")  # [K, A, N, D]
    assert np.abs(copies[:, 0].astype(np.float32) - clean[:, 0]).mean() > 0.05
    assert np.abs(copies[:, 0].astype(np.float32) - copies[:, 1]).mean() > 0.05
    direct, _ = store.read(0, "v", (1, 1), array="augmented")
    np.testing.assert_array_equal(direct, zarr.open_group(str(train))["augmented"][0, 1, 1])


def test_a_dense_store_holds_every_clip_start_of_each_video(protocol_stores):
    _, _, dense = protocol_stores
    group = zarr.open_group(str(dense))
    frames, clips = group["videos/n_frames"][:], group["videos/n_clips"][:]
    span = (4 - 1) * 2 + 1  # 4 frames at step 2
    np.testing.assert_array_equal(clips, 1 + np.maximum(frames - span, 0) // 2)
    assert len(set(clips.tolist())) > 1 and group["tokens"].shape[1] == clips.max()
    row = int(np.argmin(clips))
    index = group["clips/frame_index"][row]  # [K, T]
    assert (index[clips[row]:] == -1).all() and (index[:clips[row], 0] == np.arange(clips[row]) * 2).all()
    store = Store.open(dense)
    mine, _ = store.read(row, "v", (slice(0, int(clips[row])),))  # the shard's first clips, read directly
    np.testing.assert_array_equal(mine, group["tokens"][row, :clips[row]])
    assert run(__import__("pathlib").Path("fer-cache"), "verify", dense).returncode == 0


def test_copies_and_dense_stores_resume_after_a_kill_to_the_same_bytes(protocol_stores, tmp_path):
    config, train, dense = protocol_stores
    text = config.read_text()
    for reference, yaml in ((train, text), (dense, text.replace("clips_per_video: 2", "clips_per_video: all")
                                            .replace(", augment: {copies: 2}", ""))):
        config.write_text(yaml)
        try:
            out = tmp_path / reference.name
            code, _ = extract_process(config, out, fault="3:KILL", batch="8")
            assert code == -signal.SIGKILL
            code, log = extract_process(config, out, batch="8")
            assert code == 0, log
        finally:
            config.write_text(text)
        for array in ("tokens", "augmented", "videos/n_clips", "clips/frame_index"):
            if (reference / array).exists():
                assert tree_digest(out / array) == tree_digest(reference / array), array


def test_the_paper_preset_and_refusals(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("extraction: {preset: paper, dtype: int8}\n")
    extraction = load_config(path).extraction
    assert (extraction.frames_per_clip, extraction.frame_step, extraction.clips_per_video) == (16, 4, 8)
    assert extraction.augment.copies == 4 and extraction.dtype == "int8"
    for bad, needle in (("{preset: thesis}", "'preset' must be one of paper"),
                        ("{clips_per_video: all, augment: {copies: 2}}", "fixed clips_per_video"),
                        ("{augment: {copies: 0}}", "'copies' must be at least 1"),
                        ("{clips_per_video: some}", "must be a number or all")):
        path.write_text(f"extraction: {bad}\n")
        with pytest.raises(ConfigError, match=needle):
            load_config(path)


def test_scan_says_what_copies_and_every_clip_start_cost(protocol_stores):
    config, _, _ = protocol_stores
    ran = run(__import__("pathlib").Path("fer-cache"), "scan", "--config", config, "--dataset", "demo",
              "--encoder", "tiny")
    assert "48 encoder passes for 48 clips x 1 views" in ran.stdout  # 24 videos x 2 clips
    assert "+ 96 encoder passes for 2 augmented copies of every clip" in ran.stdout
    text = config.read_text()
    config.write_text(text.replace("clips_per_video: 2", "clips_per_video: all").replace(", augment: {copies: 2}", ""))
    try:
        refused = run(__import__("pathlib").Path("fer-cache"), "scan", "--config", config, "--dataset", "demo",
                      "--encoder", "tiny")
        assert_one_line_error(refused, "add --decode")
        decoded = run(__import__("pathlib").Path("fer-cache"), "scan", "--config", config, "--dataset", "demo",
                      "--encoder", "tiny", "--decode")
        frames = [int(line.split("│")[-2]) for line in decoded.stdout.splitlines() if line.count("│") == 5]
        expected = sum(1 + max(n - 7, 0) // 2 for n in frames)
        assert len(frames) == 24 and f"{expected} encoder passes for {expected} clips" in decoded.stdout
    finally:
        config.write_text(text)


def test_verify_checks_the_augmented_copies_and_repair_queues_their_video(protocol_stores, tmp_path):
    """A NaN in a video's augmented copies (its clean tokens intact) is found, named with the copies' chunk folder,
    and --repair marks the video pending for the extraction to encode again."""
    import shutil

    from fer_cache.store.audit import verify_store
    _, train, _ = protocol_stores
    store = shutil.copytree(train, tmp_path / "train.zarr")
    group = zarr.open_group(str(store), mode="r+")
    values = group["augmented"][1]
    values[0, 1, 3, 2] = np.nan
    group["augmented"][1] = values
    report = verify_store(str(store))
    assert not report.ok and report.damaged == [1]
    assert any("1 non-finite augmented-copy values" in p and f"{store}/augmented/c/1" in p for p in report.problems)
    verify_store(str(store), repair=True)
    assert group["videos/status"][1] == schema.PENDING
