"""Training from a store's augmented copies and testing on every clip start (issue 32): the copy each clip trains on
in an epoch is the same in every schedule, test and validation read clean tokens, PBV sums over each video's own
clips, and the paper table marks only what the cache cannot reproduce."""

import csv

import numpy as np
import pytest
import torch
import zarr

from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.errors import FerProbeError
from fer_probe.protocols.cv import run_cv
from fer_probe.results.report_tables import same_as_paper

pytest.importorskip("kornia")


def recorded_copies(monkeypatch, train, tmp_path, **settings) -> dict[tuple[int, int, int], int]:
    """(epoch, video, clip) -> the copy read, over one cv run."""
    seen = {}
    original = CacheReader.read_batch

    def read_batch(self, rows, clips, views, *, all_clips, copies=None):
        assert copies is not None  # training reads copies only
        for b, v in enumerate(rows):
            for k in range(self.clips) if all_clips else [int(clips[b])]:
                key = (self.ids[int(v)], k, int(copies[b, k]))
                seen.setdefault(key[:2], set()).add(key[2])
        return original(self, rows, clips, views, all_clips=all_clips, copies=copies)
    monkeypatch.setattr(CacheReader, "read_batch", read_batch)
    cfg = ProbeConfig.from_recipe("paper", epochs=1, device="cpu", num_heads=4, **settings)
    run_cv(str(train), tmp_path / "_".join(f"{k}{v}" for k, v in settings.items()), cfg, n_folds=2)
    return seen


def test_each_clip_trains_on_the_same_copy_in_every_schedule(protocol_stores, tmp_path, monkeypatch):
    _, train, _ = protocol_stores
    all_folds = recorded_copies(monkeypatch, train, tmp_path, schedule="all-folds")
    per_fold = recorded_copies(monkeypatch, train, tmp_path, schedule="per-fold")
    one_clip = recorded_copies(monkeypatch, train, tmp_path, train_clips="one")
    assert all(len(copies) == 1 for copies in all_folds.values())  # one copy per clip in the one epoch
    assert per_fold == all_folds
    assert all(one_clip[key] == all_folds[key] for key in one_clip)
    assert len({c for copies in all_folds.values() for c in copies}) == 2  # both copies are drawn


def test_training_on_copies_differs_from_clean_and_clean_is_the_store_without_copies(protocol_stores, tmp_path):
    _, train, _ = protocol_stores
    cfg = ProbeConfig.from_recipe("paper", epochs=2, device="cpu", num_heads=4)
    augmented = run_cv(str(train), tmp_path / "a", cfg, n_folds=2)
    clean = run_cv(str(train), tmp_path / "c", cfg.with_settings(train_copies="clean"), n_folds=2)
    assert augmented.config.train_copies == "augmented" and clean.config.train_copies == "clean"
    a = np.concatenate([np.concatenate(f.clip_posteriors) for f in augmented.folds])
    c = np.concatenate([np.concatenate(f.clip_posteriors) for f in clean.folds])
    assert a.shape == c.shape and not np.allclose(a, c)


def test_pbv_over_each_videos_own_clip_count_equals_a_straightforward_loop(protocol_stores, tmp_path):
    from fer_probe.results.metrics import majority_vote
    from fer_probe.results.outputs import read_probe
    _, train, dense = protocol_stores
    cfg = ProbeConfig.from_recipe("paper", epochs=2, device="cpu", num_heads=4)
    result = run_cv(str(train), tmp_path / "run", cfg, n_folds=2, test_store=str(dense))
    assert result.config.test_clips == "each"  # auto, on a dense scoring store
    group = zarr.open_group(str(dense))
    ids = [str(i) for i in group["videos/id"][:]]
    counts = group["videos/n_clips"][:]
    probe, _ = read_probe(tmp_path / "run" / "weights" / "fold0.safetensors")
    names = result.class_names
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "predictions.csv")) if r["fold"] == "0"]
    assert {len(p) for p in result.folds[0].clip_posteriors} == {int(counts[ids.index(r["video_id"])]) for r in rows}
    for row in rows:
        i = ids.index(row["video_id"])
        tokens = torch.from_numpy(group["tokens"][i, :counts[i], 0].astype(np.float32))  # [K_v, N, D], by zarr
        posteriors = np.stack([torch.softmax(probe(clip[None]), dim=-1)[0].detach().numpy() for clip in tokens])
        assert row["pred_pbv"] == names[int(posteriors.sum(axis=0).argmax())]
        assert row["pred_mv"] == names[majority_vote(posteriors)]
        np.testing.assert_allclose([float(row[f"p_{n}"]) for n in names], posteriors.sum(0) / posteriors.sum(),
                                   rtol=1e-4, atol=1e-6)


def test_dense_and_copyless_stores_refuse_what_they_cannot_do(protocol_stores, tmp_path):
    from tests.helpers import write_planted_store
    _, train, dense = protocol_stores
    cfg = ProbeConfig.from_recipe("paper", epochs=1, device="cpu", num_heads=4)
    with pytest.raises(FerProbeError, match="holds every clip start"):
        run_cv(str(dense), tmp_path / "d", cfg, n_folds=2)
    with pytest.raises(FerProbeError, match="holds no augmented copies"):
        run_cv(str(dense), tmp_path / "n", cfg.with_settings(train_copies="augmented", train_clips="one"), n_folds=2)
    other = write_planted_store(tmp_path / "other.zarr", width=48)  # other videos, another encoder
    with pytest.raises(FerProbeError, match="test on a store"):
        run_cv(str(train), tmp_path / "o", cfg, n_folds=2, test_store=str(other))


def test_the_paper_table_marks_only_the_fixed_copies_for_the_preset():
    probe = ProbeConfig.from_recipe("paper", precision="float16", test_clips="each",
                                    train_copies="augmented").as_dict() | {"num_heads": 16}
    test_sampling = {"clips_per_video": "all", "clip_stride": 1, "resize": 438, "crop": 384}
    same = same_as_paper(probe, 16, clips=8, test_sampling=test_sampling)
    assert [k for k, v in same.items() if not v] == ["augmentation"]
    assert not same_as_paper(probe, 16, clips=8, test_sampling=test_sampling | {"clip_stride": 2})["test_clips"]
