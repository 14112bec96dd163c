import json
import os
import shutil
import signal
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from fer_cache.cli import app
from fer_cache.config import ExtractionConfig, load_config
from fer_cache.extraction.pipeline import ExtractRequest, run_extraction
from fer_cache.store import schema
from tests.helpers import BIN, extract_process, tree_digest, write_config

runner = CliRunner()


def extract(config, out, *extra):
    return runner.invoke(app, ["extract", "--dataset", "demo", "--encoder", "tiny", "--out", str(out), "--config",
                               str(config), "--workers", "0", *extra])


def test_schema_one_layout_field_by_field(reference_store):
    group = zarr.open_group(str(reference_store), mode="r")
    V = 24
    expected = {"tokens": ((V, 2, 1, 8, 48), "float16", (1, 1, 1, 8, 48)),
                "videos/label": ((V,), "int16", None), "videos/n_frames": ((V,), "int32", (1,)),
                "videos/status": ((V,), "uint8", (1,)), "clips/frame_index": ((V, 2, 4), "int32", (1, 2, 4))}
    for name, (shape, dtype, chunks) in expected.items():
        assert group[name].shape == shape and str(group[name].dtype) == dtype, name
        if chunks:
            assert group[name].chunks == chunks, name
    for name in ("videos/id", "videos/path", "videos/subject", "videos/error"):
        assert group[name].shape == (V,) and isinstance(group[name][0].item(), str), name
    attrs = dict(group.attrs)
    assert attrs["fer_cache_schema"] == 1 and attrs["dataset"] == "demo"
    assert attrs["label_names"][:3] == ["neutral", "calm", "happy"]
    assert attrs["token_grid"] == [2, 2, 2]
    assert {"family", "arch", "embed_dim", "depth", "num_heads", "patch_size", "tubelet_size", "resolution",
            "frames_per_clip", "checkpoint", "checkpoint_sha256", "checkpoint_key"} <= set(attrs["encoder"])
    assert set(attrs["sampling"]) >= {"frames_per_clip", "frame_step", "clips_per_video", "spatial_views", "resize",
                                      "crop", "mean", "std"}
    assert attrs["storage"] == {"dtype": "float16", "compressor": "none"}
    assert attrs["fingerprint"] == schema.fingerprint(attrs["encoder"], attrs["sampling"], attrs["storage"],
                                                  token_grid=attrs["token_grid"])
    assert (group["videos/status"][:] == schema.DONE).all()
    assert (group["videos/n_frames"][:] == 24).all()
    assert (group["clips/frame_index"][0] == [[0, 2, 4, 6], [17, 19, 21, 23]]).all()
    subjects = set(schema.read_strings(group["videos/subject"]))
    assert subjects == {"1", "2", "3", "4"}
    assert np.isfinite(group["tokens"][:]).all()


def test_fingerprint_mismatch_is_refused_and_store_left_untouched(tmp_path, demo_small, reference_store):
    store = tmp_path / "copy.zarr"
    shutil.copytree(reference_store, store)
    before = tree_digest(store)
    config = write_config(tmp_path, demo_small).read_text().replace("frame_step: 2", "frame_step: 3")
    (tmp_path / "other.yaml").write_text(config)
    result = extract(tmp_path / "other.yaml", store)
    assert result.exit_code == 1
    assert "extracted differently (sampling.frame_step 2 -> 3)" in " ".join(result.output.split())
    assert "--overwrite" in result.output
    assert tree_digest(store) == before
    result = extract(tmp_path / "other.yaml", store, "--overwrite")
    assert result.exit_code == 0
    assert zarr.open_group(str(store), mode="r").attrs["sampling"]["frame_step"] == 3


def test_broken_files_are_recorded_and_exit_3(tmp_path, demo_small):
    root = tmp_path / "videos"
    shutil.copytree(demo_small / "Actor_01", root / "Actor_01")
    (root / "Actor_01" / "02-01-03-01-01-02-01.mp4").write_bytes(b"")
    (root / "Actor_01" / "02-01-04-01-01-02-01.mp4").write_bytes(np.random.default_rng(1).bytes(4096))
    (root / "Actor_01" / "02-01-05-01-01-02-01.mp4").write_text("hello, not a video\n")
    (root / "Actor_01" / "notes.mp4").write_text("misnamed")
    config = write_config(tmp_path, root)
    result = extract(config, tmp_path / "s.zarr")
    assert result.exit_code == 3, result.output
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    ids = schema.read_strings(group["videos/id"])
    status = dict(zip(ids, group["videos/status"][:].tolist()))
    errors = dict(zip(ids, schema.read_strings(group["videos/error"])))
    for broken in ("02-01-03-01-01-02-01", "02-01-04-01-01-02-01", "02-01-05-01-01-02-01"):
        assert status[broken] == schema.FAILED and errors[broken]
        assert f"failed {broken}" in result.output.replace("\n", " ")
    assert sum(s == schema.DONE for s in status.values()) == 6
    assert "empty file" in errors["02-01-03-01-01-02-01"]
    assert "notes.mp4" in result.output


def tokens_of(store):
    group = zarr.open_group(str(store), mode="r")
    return group["tokens"][:], group["videos/status"][:]


def test_kill_9_then_resume_equals_uninterrupted(tmp_path, demo_small, reference_store):
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "killed.zarr"
    code, _ = extract_process(config, store, fault="4:KILL")
    assert code == -signal.SIGKILL
    _, status = tokens_of(store)
    assert (status == schema.DONE).sum() == 4 and not (tmp_path / "killed.zarr.partial").exists()
    result = extract(config, store, "--batch-size", "3")  # the same command again
    assert result.exit_code == 0, result.output
    resumed, status = tokens_of(store)
    reference, _ = tokens_of(reference_store)
    assert (status == schema.DONE).all()
    assert np.array_equal(resumed, reference)


def test_sigterm_stops_cleanly_and_resumes(tmp_path, demo_small, reference_store):
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "term.zarr"
    code, output = extract_process(config, store, fault="2:TERM")
    assert code == 130 and "rerun the same command to resume" in output and "Traceback" not in output
    assert 2 <= (tokens_of(store)[1] == schema.DONE).sum() < 24  # stopped after the write in progress
    assert not (tmp_path / "term.zarr.lock").exists()
    assert extract(config, store, "--batch-size", "3").exit_code == 0
    assert np.array_equal(tokens_of(store)[0], tokens_of(reference_store)[0])


def test_a_grown_dataset_is_appended_and_lost_chunks_are_encoded_again(tmp_path, demo_small, reference_store):
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "grow.zarr"
    assert extract(config, store, "--batch-size", "3", "--limit", "10").exit_code == 0
    first = tokens_of(store)[0].copy()
    result = extract(config, store, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "this run encoded 14 videos" in " ".join(result.output.split())
    assert "14 new videos appended" in " ".join(result.output.split())
    tokens, status = tokens_of(store)
    assert (status == schema.DONE).all() and np.array_equal(tokens[:10], first)
    assert np.array_equal(tokens, tokens_of(reference_store)[0])
    next(p for p in (store / "tokens" / "c" / "6").rglob("*") if p.is_file()).unlink()
    again = extract(config, store, "--batch-size", "3")
    assert again.exit_code == 0 and "this run encoded 1 videos" in " ".join(again.output.split())
    assert np.array_equal(tokens_of(store)[0], tokens_of(reference_store)[0])


def test_two_process_torchrun_equals_one_process(tmp_path, demo_small, reference_store):
    config = write_config(tmp_path, demo_small)
    store = tmp_path / "ddp.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    import socket
    with socket.socket() as probe:  # a free port: a fixed one can still be held by an earlier run
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(BIN / "torchrun"), "--nproc_per_node=2", f"--master_port={port}", "-m", "fer_cache.cli", "extract",
               "--dataset", "demo", "--encoder", "tiny", "--out", str(store), "--config", str(config),
               "--workers", "0", "--device", "cpu", "--batch-size", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    summaries = [line for line in done.stdout.splitlines() if "videos done" in line]
    assert len(summaries) == 1 and "24/24 videos done" in summaries[0]  # one summary, with every rank's total
    assert "this run encoded 24 videos" in " ".join(done.stdout.split()) and "2 ranks encoded" in done.stdout
    tokens, status = tokens_of(store)
    assert (status == schema.DONE).all()
    assert np.array_equal(tokens, tokens_of(reference_store)[0])


def test_fsspec_url_store(tmp_path, demo_small):
    config = load_config(write_config(tmp_path, demo_small))
    request = ExtractRequest(dataset="demo", encoder="tiny", out="memory://fer-test/demo.zarr", device="cpu",
                             workers=0, limit=3)
    summary = run_extraction(config, request)
    assert summary.exit_code == 0 and summary.done == 3
    group = zarr.open_group("memory://fer-test/demo.zarr", mode="r")
    assert group["tokens"].shape[0] == 3 and (group["videos/status"][:] == schema.DONE).all()
    again = run_extraction(config, request)
    assert again.encoded_now == 0  # resumed: nothing left to do
    grown = run_extraction(config, replace(request, limit=5))
    assert grown.encoded_now == 2 and zarr.open_group("memory://fer-test/demo.zarr", mode="r")["tokens"].shape[0] == 5


def test_verify_info_and_export(tmp_path, reference_store):
    store = tmp_path / "v.zarr"
    shutil.copytree(reference_store, store)
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["info", str(store), "--json"])
    payload = json.loads(info.output)
    assert payload["counts"] == {"videos": 24, "done": 24, "pending": 0, "failed": 0}
    assert payload["bytes_per_clip"] > 0
    out = tmp_path / "s.h5"
    assert runner.invoke(app, ["export-h5", str(store), str(out)]).exit_code == 0
    import h5py
    with h5py.File(out) as f:
        assert np.array_equal(f["tokens"][:], zarr.open_group(str(store), mode="r")["tokens"][:])
        assert json.loads(f.attrs["label_names"])[0] == "neutral"
    group = zarr.open_group(str(store), mode="r+")
    values = group["tokens"][5]
    values[1, 0, 3, 7] = np.nan
    group["tokens"][5] = values
    video = schema.read_strings(group["videos/id"])[5]
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 3 and video in result.output and "non-finite" in result.output


def test_scan_json_reports_decoded_frames_and_errors(tmp_path, demo_small):
    from tests.helpers import CREMA_D
    config = write_config(tmp_path, demo_small)
    result = runner.invoke(app, ["scan", "--dataset", "crema", "--config", str(config), "--decode", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    frames = {v["id"]: v["n_frames"] for v in payload["videos"]}
    assert frames["1001_DFA_DIS_XX"] == 70 and frames["1001_DFA_HAP_XX"] == 56
    assert {v["label_name"] for v in payload["videos"]} == {"angry", "disgust", "fearful", "happy", "neutral", "sad"}
    assert payload["errors"] == [] and CREMA_D.is_dir()
    demo = json.loads(runner.invoke(app, ["scan", "--dataset", "demo", "--config", str(config), "--json"]).stdout)
    assert len(demo["videos"]) == 24 and "n_frames" not in demo["videos"][0]
    table = " ".join(runner.invoke(app, ["scan", "--dataset", "demo", "--config", str(config)]).stdout.split())
    assert "videos per class: neutral 4, happy 4, sad 4, angry 4, fearful 4, disgust 4" in table
    assert "videos per subject: 1 6, 2 6, 3 6, 4 6" in table


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_compact_dtypes_read_back_within_their_reported_error(tmp_path, demo_small, reference_store, dtype):
    from fer_probe.data.reader import CacheReader
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("dtype: float16", f"dtype: {dtype}"))
    store = tmp_path / f"{dtype}.zarr"
    assert extract(config, store, "--batch-size", "3", "--limit", "4").exit_code == 0
    info = json.loads(runner.invoke(app, ["info", str(store), "--json"]).output)
    assert info["dtype"] == dtype and info["quantisation_error"] > 0
    compact, reference = CacheReader(store), CacheReader(reference_store)
    for v in range(4):
        error = (compact.video(v) - reference.video(v)).abs().max().item()
        assert error <= info["quantisation_error"] * 1.5 + 2e-3  # plus float16 rounding of the reference
    assert runner.invoke(app, ["verify", str(store)]).exit_code == 0


NEW_FAMILIES = """\
  v21: {{family: vjepa2.1, checkpoint: {fixtures}/vjepa21-tiny/checkpoint.pt, checkpoint_key: ema_encoder,
         resolution: 96, frames_per_clip: 8, output: hierarchical}}
  mae: {{family: videomae, checkpoint: {fixtures}/videomae-tiny, frames_per_clip: 8}}
  marlin: {{family: marlin, checkpoint: {fixtures}/marlin-tiny/marlin_vit_fixture_ytf.encoder.pt, num_heads: 4,
            resolution: 64, frames_per_clip: 8}}
  clip: {{family: clip, checkpoint: {fixtures}/clip-tiny, frames_per_clip: 4}}
  siglip: {{family: siglip, checkpoint: {fixtures}/siglip-tiny, frames_per_clip: 4}}
  dinov2: {{family: dinov2, checkpoint: {fixtures}/dinov2-tiny, frames_per_clip: 4}}
  dinov3: {{family: dinov3, checkpoint: {fixtures}/dinov3-tiny, frames_per_clip: 4, output: cls}}
"""
NEW_FAMILY_CHECKPOINTS = {"v21": "vjepa21-tiny/checkpoint.pt", "mae": "videomae-tiny",
                          "marlin": "marlin-tiny/marlin_vit_fixture_ytf.encoder.pt"}


@pytest.mark.parametrize("name,settings", [
    ("v21", dict(family="vjepa2.1", checkpoint_key="ema_encoder", resolution=96, frames_per_clip=8,
                 output="hierarchical")),
    ("mae", dict(family="videomae", frames_per_clip=8)),
    ("marlin", dict(family="marlin", num_heads=4, resolution=64, frames_per_clip=8)),
    ("clip", dict(family="clip", frames_per_clip=4)),
    ("siglip", dict(family="siglip", frames_per_clip=4)),
    ("dinov2", dict(family="dinov2", frames_per_clip=4)),
    ("dinov3", dict(family="dinov3", frames_per_clip=4, output="cls")),
])
def test_new_families_extract_the_tokens_of_the_python_api(tmp_path, demo_small, name, settings):
    """data.yaml entries of the fixture encoders through fer-cache extract into a float32 store: the stored tokens
    are the Python API's tokens of the same clip (which test_encoders checks against the official references),
    normalised with the family's own mean and std, which the store records."""
    import torch

    from fer_cache.encoders import FAMILIES, build_encoder
    from fer_cache.inputs.video import Sampling, cut_clips, decode_video
    from tests.helpers import ENCODER_FIXTURES
    text = write_config(tmp_path, demo_small).read_text().replace("encoders:\n", "encoders:\n" + NEW_FAMILIES.format(
        fixtures=ENCODER_FIXTURES)).replace("dtype: float16", "dtype: float32")
    (tmp_path / "data.yaml").write_text(text)
    store = tmp_path / f"{name}.zarr"
    result = runner.invoke(app, ["extract", "--dataset", "demo", "--encoder", name, "--out", str(store), "--config",
                                 str(tmp_path / "data.yaml"), "--workers", "0", "--limit", "2"])
    assert result.exit_code == 0, result.output
    group = zarr.open_group(str(store), mode="r")
    attrs = dict(group.attrs)
    assert attrs["encoder"]["family"] == settings["family"] and attrs["storage"]["dtype"] == "float32"
    assert attrs["objective"] == FAMILIES[settings["family"]].objective
    model = build_encoder(checkpoint=ENCODER_FIXTURES / NEW_FAMILY_CHECKPOINTS.get(name, f"{name}-tiny"), **settings)
    assert (tuple(attrs["sampling"]["mean"]), tuple(attrs["sampling"]["std"])) == (model.normalisation.mean,
                                                                                 model.normalisation.std)
    recorded = {k: v for k, v in attrs["sampling"].items() if k not in ("mean", "std", "crop")}
    sampling = Sampling.from_config(ExtractionConfig(**recorded), attrs["sampling"]["crop"],
                                    normalisation=model.normalisation)
    frames = decode_video(demo_small / schema.read_strings(group["videos/path"])[0], sampling.resize)
    clips, _ = cut_clips(frames, sampling)  # [K, S, T, h, w, 3]
    with torch.inference_mode():
        expected = model(sampling.normalise(clips[:, 0]))  # [K, N, D]
    stored = group["tokens"][0, :, 0]
    assert stored.shape == tuple(expected.shape) and stored.shape[-1] == attrs["encoder"].get("token_width",
                                                                                             model.cfg.embed_dim)
    assert list(attrs["token_grid"]) == list(model.cfg.token_grid)
    assert np.abs(stored - expected.numpy()).max() < 1e-4
    info = runner.invoke(app, ["info", str(store)])
    assert f"family {settings['family']}" in info.output and f"output {settings.get('output', 'last')}" in info.output


def test_extraction_with_rank_writes_a_compact_store_that_resumes_exactly(tmp_path, demo_small, reference_store):
    """A basis fitted on a seeded sample of videos first, then every video's coordinates on it: the same store after
    a kill and a resume, the projection of the full extraction's tokens, and a store fer-probe trains on."""
    from fer_cache.store import Store
    config = write_config(tmp_path, demo_small)
    whole = tmp_path / "whole.zarr"
    assert extract(config, whole, "--batch-size", "3", "--rank", "6").exit_code == 0
    store = Store.open(whole)
    basis = store.basis
    assert store.tokens.shape[-1] == 6 and basis.fitted_on["sample"] == "extraction"
    assert store.attrs["storage"]["basis"]["digest"] == basis.digest
    full = Store.open(reference_store)
    for row in (0, 7):
        x = schema.decode_tokens(*full.read(row, "v"), full.dtype)
        assert np.abs(store.read(row, "v")[0].astype(np.float32) - basis.project(x)).max() < 1e-2
    killed = tmp_path / "killed.zarr"
    code, _ = extract_process(config, killed, fault="4:KILL", extra=("--rank", "6"))
    assert code == -signal.SIGKILL
    resumed = extract(config, killed, "--batch-size", "3", "--rank", "6")
    assert resumed.exit_code == 0, resumed.output
    assert tree_digest(killed / "tokens") == tree_digest(whole / "tokens")
    assert Store.open(killed).basis.digest == basis.digest
    refused = extract(config, killed, "--batch-size", "3", "--rank", "5")
    assert refused.exit_code == 1 and "extracted differently" in refused.output
    too_wide = extract(config, tmp_path / "wide.zarr", "--rank", "48")  # the tiny encoder's tokens are 48 wide
    assert too_wide.exit_code == 1 and "between 1 and the token width 48" in too_wide.output
    assert not (tmp_path / "wide.zarr").exists()
