"""Variants of one store train together: one read of each sampled clip per epoch for all of them, the same numbers
as run one by one, and no variant ever sees a fold's test videos through another."""

import csv
import json

import numpy as np
import pytest
import zarr
from safetensors.torch import load_file
from typer.testing import CliRunner

import fer_probe.protocols.cv as cv
import fer_probe.protocols.engine as engine
from fer_probe.cli import app
from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.errors import FerProbeError
from fer_probe.protocols.ablate import run_ablation
from fer_probe.protocols.cv import run_cv, run_cv_many
from tests.helpers import write_planted_store

BASE = ProbeConfig.from_recipe("fast", epochs=3, num_heads=4, device="cpu", memory_budget_mb=0)
QUICK = ProbeConfig.from_recipe("paper", epochs=3, num_heads=4, device="cpu")
runner = CliRunner()
VARIANTS = {"base": BASE, "proj": BASE.with_settings(use_proj=True), "one": BASE.with_settings(test_clips="one"),
            "all-clips": BASE.with_settings(train_clips="all"), "linear": BASE.with_settings(probe="linear")}


def counting_clip_reads(monkeypatch) -> list[int]:
    """Patches the reader and the trainer so that the clip views read while training are counted (count[0]), and
    the videos read whole otherwise (count[1]: test passes, and the pooled baselines' pass of their own)."""
    count, training = [0, 0], [False]
    read = CacheReader._read

    def counted(self, v, selection=(), **kwargs):
        if training[0]:  # (), (slice, view) or (clip, view): every clip view of the video, of one view, or one
            count[0] += self.clips * self.views if not selection else self.clips if selection[0] == slice(None) else 1
        else:
            count[1] += 1
        return read(self, v, selection, **kwargs)
    train = cv.train_folds

    def flagged(*args, **kwargs):
        training[0] = True
        try:
            return train(*args, **kwargs)
        finally:
            training[0] = False
    monkeypatch.setattr(CacheReader, "_read", counted)
    monkeypatch.setattr(cv, "train_folds", flagged)  # run_cv's direct path
    monkeypatch.setattr(engine, "train_folds", flagged)  # runs trained together
    return count


def test_variants_train_from_one_read_with_the_numbers_of_separate_runs(tmp_path, monkeypatch):
    """Probe type, proj, training clips and test clips: five runs, each clip a variant trains on read once per
    epoch for all of them, each video read whole once (its test pass, which also gives the linear probe its
    features), and every run's posteriors those of the same run alone on the same folds."""
    store = write_planted_store(tmp_path / "s.zarr", signal=0.6, clips=4, views=2)
    reads = counting_clip_reads(monkeypatch)
    together = run_cv_many(str(store), {n: (tmp_path / "together" / n, c) for n, c in VARIANTS.items()}, n_folds=4)
    shared, tested = reads
    alone, reads_alone = {}, {}
    for name, cfg in VARIANTS.items():
        reads[:] = [0, 0]
        alone[name] = run_cv(str(store), tmp_path / "alone" / name, cfg, n_folds=4,
                             folds_file=tmp_path / "together" / "base" / "folds.json")
        reads_alone[name] = list(reads)
    videos = len(CacheReader(store))
    assert shared == reads_alone["all-clips"][0] > reads_alone["base"][0] > 0  # the clips of every variant's draws
    assert sum(r[0] for r in reads_alone.values()) == shared * 7 // 4  # one by one: 3 runs x 1 clip + 1 x 4 clips
    assert tested == videos and reads_alone["linear"] == [0, videos]  # alone, linear reads every video for itself
    for name in VARIANTS:
        a, b = together[name], alone[name]
        assert [f.video_ids for f in a.folds] == [f.video_ids for f in b.folds]
        for fa, fb in zip(a.folds, b.folds):
            for pa, pb in zip(fa.clip_posteriors, fb.clip_posteriors):
                np.testing.assert_allclose(pa, pb, atol=1e-4)  # the same probes, up to float summation order
    assert together["one"].folds[0].clip_posteriors[0].shape[0] == 1  # scored on one clip, trained as base
    assert together["all-clips"].folds[0].clip_posteriors[0].shape[0] == 2  # one pass a view, its clips joined
    assert together["base"].folds[0].clip_posteriors[0].shape[0] == 8  # a pass per clip view
    base_weights = load_file(str(tmp_path / "together" / "base" / "weights" / "fold0.safetensors"))
    one_weights = load_file(str(tmp_path / "together" / "one" / "weights" / "fold0.safetensors"))
    assert all((base_weights[k] == one_weights[k]).all() for k in base_weights)  # one trained probe serves both


def test_no_variant_sees_a_folds_test_videos(tmp_path):
    """Fold k's test videos replaced by noise: every variant's fold-k probe stays bit-identical."""
    store = write_planted_store(tmp_path / "s.zarr", signal=0.6, clips=4, views=2)
    runs = {n: (tmp_path / "first" / n, c) for n, c in VARIANTS.items() if n != "one"}
    run_cv_many(str(store), runs, n_folds=4)
    folds = json.loads((tmp_path / "first" / "base" / "folds.json").read_text())["folds"]
    subjects = CacheReader(store).subjects
    k = 1
    group = zarr.open_group(str(store), mode="r+")
    rng = np.random.default_rng(5)
    for row in [i for i, s in enumerate(subjects) if s in folds[k]["test_subjects"]]:
        group["tokens"][row] = rng.standard_normal(group["tokens"].shape[1:]).astype(np.float16) * 3
    again = {n: (tmp_path / "second" / n, c) for n, c in VARIANTS.items() if n != "one"}
    run_cv_many(str(store), again, n_folds=4, folds_file=tmp_path / "first" / "base" / "folds.json")
    for name in runs:
        a = load_file(str(tmp_path / "first" / name / "weights" / f"fold{k}.safetensors"))
        b = load_file(str(tmp_path / "second" / name / "weights" / f"fold{k}.safetensors"))
        assert all((a[key] == b[key]).all() for key in a), name


def test_ablation_table_and_figure(tmp_path, planted_store):
    summary = run_ablation(str(planted_store), tmp_path / "ab", QUICK, n_folds=4)
    rows = summary.as_json()["comparisons"]
    assert [r["comparison"] for r in rows] == ["probe type", "cross-attention proj", "clips at test time", "voting",
                                              "training clips"]
    for r in rows:
        assert 0 <= r["uar_a"] <= 1 and 0 <= r["uar_b"] <= 1
        assert r["ci95"][0] <= r["difference"] <= r["ci95"][1] or r["difference"] == 0
        assert 0 <= r["p_value"] <= 1
    names = [v.variant for v in summary.variants]
    assert names == ["attentive", "linear", "attentive-no-proj", "attentive-test-one-clip",
                     "attentive-train-one-clip"]
    assert all(v.ci95[0] <= v.uar_pbv <= v.ci95[1] for v in summary.variants)
    folds = {(tmp_path / "ab" / v / "folds.json").read_text() for v in names}
    assert len(folds) == 1  # every variant on the same folds
    assert "distinguishable" in (tmp_path / "ab" / "ablation.md").read_text()
    # the paper recipe on one view scores each video in one pass: its voting and test-clip rows are not measurements
    assert {r["comparison"]: r["by_construction"] for r in rows} == {
        "probe type": False, "cross-attention proj": False, "clips at test time": True, "voting": True,
        "training clips": False}
    assert "| identical by construction (one posterior per video) |" in (tmp_path / "ab" / "ablation.md").read_text()
    assert (tmp_path / "ab" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "ab" / "attentive-no-proj" / "config.json").read_text())["probe"]["overridden"] \
        == ["epochs", "use_proj"]


def test_ablation_against_another_extraction_of_the_same_videos(tmp_path, planted_store):
    cfg = ProbeConfig.from_recipe("fast", epochs=2, num_heads=4, device="cpu")
    cropped = write_planted_store(tmp_path / "cropped.zarr", signal=2.0)  # the same ids, other tokens
    summary = run_ablation(str(planted_store), tmp_path / "ab", cfg, n_folds=2, versus=str(cropped))
    row = summary.comparisons[-1]
    assert row.comparison == "store (planted.zarr vs cropped.zarr)" and row.uar_b > row.uar_a
    other = write_planted_store(tmp_path / "other.zarr", n_subjects=4)
    with pytest.raises(FerProbeError, match="do not hold the same videos"):
        run_ablation(str(planted_store), tmp_path / "ab2", cfg, n_folds=2, versus=str(other))
    itself = run_ablation(str(planted_store), tmp_path / "ab3", cfg, n_folds=2, versus=str(planted_store),
                          stores_only=True)  # S --versus S: said, not mistaken for an encoder comparison
    assert itself.notes == ["planted.zarr has the fingerprint of planted.zarr: the same extraction (or a copy), so "
                            "this comparison measures training noise only, not a difference between encoders or "
                            "samplings"]
    assert f"**Note:** {itself.notes[0]}" in (tmp_path / "ab3" / "ablation.md").read_text()


def test_a_partly_extracted_store_is_compared_on_the_videos_done_in_both(tmp_path, planted_store):
    """Before: with --allow-incomplete the run failed with 'do not hold the same videos: N videos only in ...' although
    they were pending in the other store (issue 33, case 7)."""
    cfg = ProbeConfig.from_recipe("fast", epochs=1, num_heads=4, device="cpu")
    status = np.ones(64, dtype=np.uint8)
    status[::4] = 0  # every fourth video still pending
    partial = write_planted_store(tmp_path / "partial.zarr", signal=2.0, status=status)
    with pytest.raises(FerProbeError, match="--allow-incomplete|pending"):
        run_ablation(str(planted_store), tmp_path / "refused", cfg, n_folds=2, versus=str(partial), stores_only=True)
    summary = run_ablation(str(planted_store), tmp_path / "ab", cfg, n_folds=2, versus=str(partial), stores_only=True,
                           allow_incomplete=True)
    assert summary.left_out == 16 and json.loads((tmp_path / "ab" / "ablation.json").read_text())["left_out_videos"] \
        == 16
    assert "16 videos done in only some of the stores were left out" in (tmp_path / "ab" / "ablation.md").read_text()
    tested = [sorted(row["video_id"] for row in csv.DictReader(open(tmp_path / "ab" / run / "predictions.csv")))
              for run in ("attentive", "attentive-on-partial")]
    assert tested[0] == tested[1] and len(tested[0]) == 48  # the same 48 videos in both runs


def test_stores_with_their_own_label_order_are_compared_by_name(tmp_path, planted_store):
    """Before: the same videos with the same label names in another order were refused, printing indices (case 8)."""
    cfg = ProbeConfig.from_recipe("fast", epochs=1, num_heads=4, device="cpu")
    other = write_planted_store(tmp_path / "reordered.zarr", signal=2.0)
    group = zarr.open_group(str(other), mode="r+")
    names = list(group.attrs["label_names"])
    order = names[::-1]
    group["videos/label"][:] = np.array([order.index(names[y]) for y in group["videos/label"][:]], dtype=np.int16)
    group.attrs["label_names"] = order
    summary = run_ablation(str(planted_store), tmp_path / "ab", cfg, n_folds=2, versus=str(other), stores_only=True)
    assert summary.comparisons[0].uar_b > 0
    labels = group["videos/label"][:]
    labels[0] = (labels[0] + 1) % len(order)  # now one video really has another label
    group["videos/label"][:] = labels
    with pytest.raises(FerProbeError, match=r"has subject/label \('1', '\w+'\) in one and \('1', '\w+'\)"):
        run_ablation(str(planted_store), tmp_path / "ab2", cfg, n_folds=2, versus=str(other), stores_only=True)


def test_ablation_of_encoders_of_every_objective_made_by_the_fixtures(tmp_path, demo_small):
    """The central claim as one command: V-JEPA 2, V-JEPA 2.1 (hierarchical), VideoMAE, MARLIN, CLIP and DINOv3 (one
    pooled vector per frame) stores of the same videos, of different token counts and widths, one probe each at its
    store's width and heads, paired against the first store; the report groups the stores by pretraining objective."""
    from fer_cache.cli import app as cache_app
    from tests.helpers import ENCODER_FIXTURES, write_config
    entries = (f"  v2: {{family: vjepa2, checkpoint: {ENCODER_FIXTURES}/vjepa2-tiny/checkpoint.pt, num_heads: 4, "
               f"resolution: 64, frames_per_clip: 8}}\n"
               f"  v21: {{family: vjepa2.1, checkpoint: {ENCODER_FIXTURES}/vjepa21-tiny/checkpoint.pt, "
               f"checkpoint_key: ema_encoder, resolution: 64, frames_per_clip: 8, output: hierarchical}}\n"
               f"  mae: {{family: videomae, checkpoint: {ENCODER_FIXTURES}/videomae-tiny, frames_per_clip: 8}}\n"
               f"  marlin: {{family: marlin, checkpoint: {ENCODER_FIXTURES}/marlin-tiny/"
               f"marlin_vit_fixture_ytf.encoder.pt, num_heads: 4, resolution: 64, frames_per_clip: 8}}\n"
               f"  clip: {{family: clip, checkpoint: {ENCODER_FIXTURES}/clip-tiny}}\n"
               f"  dino: {{family: dinov3, checkpoint: {ENCODER_FIXTURES}/dinov3-tiny, output: cls}}\n")
    config = write_config(tmp_path, demo_small)
    config.write_text(config.read_text().replace("encoders:\n", "encoders:\n" + entries))
    names = ("v2", "v21", "mae", "marlin", "clip", "dino")
    stores = []
    for name in names:
        stores.append(str(tmp_path / f"demo-{name}.zarr"))
        result = runner.invoke(cache_app, ["extract", "--dataset", "demo", "--encoder", name, "--out", stores[-1],
                                           "--config", str(config), "--workers", "0"])
        assert result.exit_code == 0, result.output
    out = tmp_path / "claim"
    result = runner.invoke(app, ["ablate", stores[0], *[a for s in stores[1:] for a in ("--versus", s)],
                                 "--stores-only", "--recipe", "fast", "--epochs", "1", "--folds", "2", "--out",
                                 str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "ablation.json").read_text())
    assert [r["comparison"] for r in summary["comparisons"]] == [f"store (demo-v2.zarr vs demo-{n}.zarr)"
                                                                 for n in names[1:]]
    variants = ["attentive", *[f"attentive-on-demo-{n}" for n in names[1:]]]
    assert [v["variant"] for v in summary["variants"]] == variants
    assert [v["changes"].get("objective") for v in summary["variants"]] == [
        None, "latent prediction", "pixel reconstruction", "pixel reconstruction", "image-text contrastive",
        "self-distillation"]
    assert (out / "ablation.png").stat().st_size > 0
    text = (out / "ablation.md").read_text()
    assert "`demo-v21.zarr: vjepa2.1 128 (hierarchical)` (tokens 64 x 512, probe heads 2 x 256 channels)" in text
    assert ("- pixel reconstruction: `demo-mae.zarr: videomae 96` (tokens 64 x 96, probe heads 4 x 24 channels); "
            "`demo-marlin.zarr: marlin 128` (tokens 64 x 128, probe heads 4 x 32 channels)") in text
    assert "- self-distillation: `demo-dino.zarr: dinov3 128 (cls)` (tokens 4 x 128, probe heads 4 x 32 channels)" \
        in text
    folds = {json.dumps(json.loads((out / name / "folds.json").read_text())) for name in variants}
    assert len(folds) == 1  # the same folds for every store
    shapes = [json.loads((out / name / "config.json").read_text())["store_attrs"] for name in variants]
    assert [a["encoder"].get("token_width", a["encoder"]["embed_dim"]) for a in shapes] == [96, 512, 96, 128, 128,
                                                                                            128]
    assert [a["token_grid"] for a in shapes] == [[4, 4, 4]] * 5 + [[4, 1, 1]]  # CLIP: 4 frames of 4 x 4 patches


def test_different_token_probes_train_as_variants_of_one_grid(tmp_path):
    """The probe is a variant field: attentive and attentive-deep train from the same reads, each as it would alone."""
    store = write_planted_store(tmp_path / "s.zarr", signal=0.6, clips=2)
    runs = {"attentive": BASE, "deep": BASE.with_settings(probe="attentive-deep")}
    together = run_cv_many(str(store), {n: (tmp_path / "together" / n, c) for n, c in runs.items()}, n_folds=2)
    for name, cfg in runs.items():
        alone = run_cv(str(store), tmp_path / "alone" / name, cfg, n_folds=2,
                       folds_file=tmp_path / "together" / "attentive" / "folds.json")
        for fa, fb in zip(together[name].folds, alone.folds):
            for pa, pb in zip(fa.clip_posteriors, fb.clip_posteriors):
                np.testing.assert_allclose(pa, pb, atol=1e-4)


def test_the_protocol_rows_compare_copies_and_every_clip_start_on_the_same_videos(protocol_stores, tmp_path):
    """Issue 32: a store with copies adds training copies (augmented vs clean); --test-store every start adds test
    clips; each variant is the baseline with that one change, scored on the same test videos."""
    pytest.importorskip("kornia")
    _, train, dense = protocol_stores
    cfg = ProbeConfig.from_recipe("paper", epochs=1, num_heads=4, device="cpu")
    summary = run_ablation(str(train), tmp_path / "abl", cfg, n_folds=2, test_store=str(dense))
    rows = {row.comparison: row for row in summary.comparisons}
    assert set(rows) >= {"training copies (2 augmented vs clean)", "test clips (the store's vs every start)"}
    clean = json.loads((tmp_path / "abl" / "attentive-train-clean" / "config.json").read_text())
    every = json.loads((tmp_path / "abl" / "attentive-test-every-start" / "config.json").read_text())
    base = json.loads((tmp_path / "abl" / "attentive" / "config.json").read_text())
    assert base["probe"]["train_copies"] == "augmented" and clean["probe"]["train_copies"] == "clean"
    assert every["test_store"] == str(dense) and every["probe"]["test_clips"] == "each"
    assert base["probe"]["test_clips"] == "all" and base["test_store"] is None
    assert "test clips (the store's vs every start)" in (tmp_path / "abl" / "ablation.md").read_text()
