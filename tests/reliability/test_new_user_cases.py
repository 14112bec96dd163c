"""Eleven cases found by running the tool as a new user would: no hang, no lost training, no perfect score from one
class, one line for each mistake, and notes where the tool decided something on its own."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import zarr

from fer_probe.config import ProbeConfig
from tests.helpers import BIN, assert_one_line_error, run, write_config, write_planted_store

FSIZE_LIMIT = "ulimit -f 20"  # 20 KiB: shared-memory frames and weight files no longer fit


def limited(command: list, cwd) -> subprocess.CompletedProcess:
    """A console script under a file-size limit, with a deadline: a hang fails the test instead of stalling it."""
    line = f"{FSIZE_LIMIT}; exec " + " ".join(f"'{c}'" for c in map(str, command))
    process = subprocess.Popen(["bash", "-c", line], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the command hung under a file-size limit")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_a_worker_that_cannot_hand_over_frames_ends_the_run(tmp_path, tiny_config):
    result = limited([BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config", tiny_config,
                      "--workers", "1", "--limit", "10", "--out", tmp_path / "U.zarr"], tmp_path)
    assert_one_line_error(result, "decode worker", "--workers 0")


def test_weights_that_cannot_be_written_keep_the_metrics(tmp_path, planted_store):
    out = tmp_path / "r"
    result = limited([BIN / "fer-probe", "cv", planted_store, "--recipe", "fast", "--epochs", "1", "--folds", "2",
                      "--num-heads", "4", "--out", out], tmp_path)
    assert_one_line_error(result, "probe weights could not be written", "metrics.json and predictions.csv")
    assert (out / "metrics.json").is_file() and (out / "predictions.csv").is_file()
    assert json.loads((out / "metrics.json").read_text())["uar_pbv"]["per_fold"]


def test_one_class_is_refused_not_scored_perfect(tmp_path, demo_small):
    store = write_planted_store(tmp_path / "one.zarr", classes=1)
    result = run(BIN / "fer-probe", "cv", store, "--recipe", "fast", "--epochs", "1", "--out", tmp_path / "r")
    assert_one_line_error(result, "only the class neutral", "at least 2 classes")
    assert not (tmp_path / "r").exists()
    result = run(BIN / "fer-probe", "cross", "--train", store, "--test", store, "--recipe", "fast", "--out",
                 tmp_path / "x")
    assert_one_line_error(result, "at least 2 classes")
    manifest = tmp_path / "videos.csv"
    manifest.write_text("path,label,subject\n" + "".join(f"Actor_0{a}/{f.name},happy,{a}\n" for a in (1, 2) for f in
                                                         sorted((demo_small / f"Actor_0{a}").iterdir())[:2]))
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("datasets:\n", f"datasets:\n  one: {{adapter: manifest, manifest: "
                                                                 f"{manifest}, root: {demo_small}}}\n"))
    result = run(BIN / "fer-cache", "extract", "--dataset", "one", "--encoder", "tiny", "--config", config, "--out",
                 tmp_path / "one-class.zarr", "--workers", "0")
    assert result.returncode == 0 and "every video carries the label happy" in result.stdout


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_seed_out_of_range_is_a_usage_error(tmp_path, planted_store, seed):
    result = run(BIN / "fer-probe", "cv", planted_store, "--seed", seed, "--out", tmp_path / "r")
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key,value,also", [("frames_per_clip", "7", "tubelet_size 2"),
                                            ("resolution", "70", "patch_size 16"),
                                            ("num_heads", "5", "embed_dim 48")])
def test_encoder_shape_mistakes_name_file_line_and_key(tmp_path, demo_small, key, value, also):
    config = write_config(tmp_path, demo_small)
    lines = config.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("  tiny:"))
    entry = "  tiny: {family: vjepa, checkpoint: null, embed_dim: 48, depth: 1, num_heads: 4, resolution: 32, " \
        "frames_per_clip: 4}"
    lines[number - 1] = entry.replace(f"{key}: {dict(frames_per_clip=4, resolution=32, num_heads=4)[key]}",
                                      f"{key}: {value}")
    config.write_text("\n".join(lines) + "\n")
    result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config", config, "--out",
                 tmp_path / "s.zarr", "--workers", "0")
    assert_one_line_error(result, f"{config} line {number} (encoders.tiny.{key})", f"{key} {value}", also)
    other = {"frames_per_clip": "resolution", "resolution": "frames_per_clip", "num_heads": "resolution"}[key]
    assert f"{other} " not in result.stderr.split(")", 1)[1]  # the valid settings are not blamed


def test_a_file_listed_twice_is_named_as_such(tmp_path, demo_small):
    files = sorted((demo_small / "Actor_01").iterdir())
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,subject\n"
                        f"Actor_01/{files[0].name},neutral,1\nActor_01/{files[0].name},neutral,1\n"
                        f"Actor_01/{files[1].name},neutral,1\nActor_01/{files[1].name},happy,1\n"
                        f"Actor_01/{files[2].name},sad,1\n")
    config = tmp_path / "data.yaml"
    config.write_text(f"datasets:\n  m: {{adapter: manifest, manifest: {manifest}, root: {demo_small}}}\n")
    result = run(BIN / "fer-cache", "scan", "--dataset", "m", "--config", config, "--json")
    payload = json.loads(result.stdout)
    reasons = [e["reason"] for e in payload["errors"]]
    assert "listed twice in m.csv (lines 2 and 3); remove one row" in reasons
    assert "listed with two labels in m.csv: neutral (line 4) and happy (line 5); neutral is kept: delete the wrong " \
        "row" in reasons
    assert sorted(v["path"] for v in payload["videos"]) == [f"Actor_01/{files[i].name}" for i in range(3)]
    assert not any("rename one" in r for r in reasons)


def test_ctrl_c_in_cv_says_what_was_kept_and_report_says_incomplete(tmp_path, planted_store, monkeypatch):
    import fer_probe.protocols.cv as cv

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cv, "train_folds", interrupted)
    out = tmp_path / "r"
    result = run(BIN / "fer-probe", "cv", planted_store, "--recipe", "fast", "--num-heads", "4", "--out", out)
    assert result.returncode == 130
    assert "stopped" in result.stderr and "config.json" in result.stderr and "--overwrite" in result.stderr
    report = run(BIN / "fer-probe", "report", out)
    assert_one_line_error(report, "the run is incomplete", "--overwrite")


def test_entry_frames_replacing_the_extraction_default_is_said(tmp_path, demo_small):
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("frames_per_clip: 4}", "frames_per_clip: 8}", 1))
    result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config", config, "--out",
                 tmp_path / "s.zarr", "--workers", "0", "--limit", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "frames_per_clip 8 of encoder 'tiny'" in " ".join(result.stdout.split())
    assert "replaces the extraction's 4" in " ".join(result.stdout.split())


def test_resize_zero_is_refused(tmp_path, demo_small):
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("dtype: float16}", "dtype: float16, resize: 0}"))
    result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config", config, "--out",
                 tmp_path / "s.zarr", "--workers", "0")
    assert_one_line_error(result, "resize 0 is smaller than the encoder's 32 px input")


def test_videos_shorter_than_a_clip_span_are_noted(tmp_path):
    from fer_cache.inputs.datasets.synthetic import generate_demo_dataset
    root = tmp_path / "short"
    generate_demo_dataset(root, actors=1, repetitions=1, n_frames=5, size=64)
    config = write_config(tmp_path, root)
    config.write_text(config.read_text().replace("frames_per_clip: 4, frame_step: 2", "frames_per_clip: 8, "
                                                 "frame_step: 2").replace("frames_per_clip: 4}", "frames_per_clip: 8}"))
    store = tmp_path / "s.zarr"
    result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config", config, "--out",
                 store, "--workers", "0")
    videos = zarr.open_group(str(store), mode="r")["videos/status"].shape[0]
    expected = f"{videos} videos are shorter than one clip span (15 frames)"
    assert result.returncode == 0 and expected in " ".join(result.stdout.split())
    assert f"({videos} of them mostly padding)" in " ".join(result.stdout.split())
    info = run(BIN / "fer-cache", "info", store)
    assert expected in " ".join(info.stdout.split())
    payload = json.loads(run(BIN / "fer-cache", "info", store, "--json").stdout)
    assert payload["padding"]["shorter_than_a_clip"] == videos == payload["padding"]["mostly_padding"]


def test_compare_says_when_class_sets_differ(tmp_path):
    from fer_probe.protocols.cv import run_cv
    cfg = ProbeConfig.from_recipe("fast", epochs=1, num_heads=4, device="cpu")
    four = write_planted_store(tmp_path / "four.zarr", classes=4)
    six = write_planted_store(tmp_path / "six.zarr", classes=6, n_subjects=4)
    run_cv(str(four), tmp_path / "a", cfg, n_folds=2)
    run_cv(str(six), tmp_path / "b", cfg, n_folds=2)
    result = run(BIN / "fer-probe", "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "t.md")
    assert result.returncode == 0
    text = (tmp_path / "t.md").read_text()
    assert "| 4 | 0.250 |" in text and "| 6 | 0.167 |" in text
    assert "different class sets" in text and "different class sets" in " ".join(result.stdout.split())
    np.testing.assert_equal(text.count("**Note:**"), 1)


def test_an_output_the_family_lacks_names_file_line_and_key(tmp_path, demo_small):
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("resolution: 32, frames_per_clip: 4}",
                                                 "resolution: 32, frames_per_clip: 4, output: hierarchical}", 1))
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if text.startswith("  tiny:"))
    result = run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config", config, "--out",
                 tmp_path / "s.zarr", "--workers", "0")
    assert_one_line_error(result, f"{config} line {line} (encoders.tiny.output)", "'output' must be one of last",
                          "family vjepa, got 'hierarchical'")
    assert not (tmp_path / "s.zarr").exists()


def test_stores_only_without_a_versus_store_is_one_line(tmp_path, planted_store):
    result = run(BIN / "fer-probe", "ablate", planted_store, "--stores-only", "--out", tmp_path / "ab")
    assert_one_line_error(result, "--stores-only compares stores: name at least one --versus store")


def test_terminal_tables_at_80_columns_never_cut_a_number(tmp_path, planted_store, monkeypatch):
    """Before: `0.5…`, `[0.…` and `attentive-…` at 80 columns (issue 33, case 16). Columns that do not fit are left
    out (the files keep them) and the rest wraps; no cell ends in an ellipsis."""
    import re

    import fer_probe.cli as cli
    monkeypatch.setattr(cli.console, "_width", 80)
    other = write_planted_store(tmp_path / "a-much-longer-store-name-for-the-other-extraction.zarr", signal=2.0)
    cv = run(BIN / "fer-probe", "cv", planted_store, "--recipe", "fast", "--epochs", "1", "--folds", "2", "--out",
             tmp_path / "cv")
    ablate = run(BIN / "fer-probe", "ablate", planted_store, "--versus", other, "--recipe", "fast", "--epochs", "1",
                 "--folds", "2", "--out", tmp_path / "ab")
    compare = run(BIN / "fer-probe", "compare", tmp_path / "cv", tmp_path / "ab" / "attentive-proj")
    for result in (cv, ablate, compare):
        assert result.returncode == 0, result.stdout + result.stderr
        table = [line for line in result.stdout.splitlines() if "│" in line or "┃" in line]  # not progress lines
        assert table and not any("…" in line for line in table) and max(len(line) for line in table) <= 80
    metrics = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert f"{metrics['uar_pbv']['mean']:.3f}" in cv.stdout
    assert re.search(r"left out at this terminal width: see ablation\.md", ablate.stdout)
