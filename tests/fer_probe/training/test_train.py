import csv
import json
import math

import numpy as np
import pytest
import torch
import zarr
from safetensors.torch import load_file

from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.protocols.cv import run_cv
from fer_probe.training.candidates import Candidate, CandidateGrid, FoldPlan
from fer_probe.training.optim import cosine, parameter_groups
from fer_probe.training.train import StepRunner
from tests.helpers import write_planted_store

QUICK = {"epochs": 3, "num_heads": 4, "device": "cpu"}


def test_schedules_follow_vjepa():
    """V-JEPA steps its schedulers before each iteration, so step s of T uses progress s / T (s from 1)."""
    assert cosine(1e-3, 0.0, 0.0) == 1e-3 and cosine(1e-3, 0.0, 1.0) == 0.0
    assert math.isclose(cosine(1e-3, 0.0, 0.5), 5e-4)
    assert math.isclose(cosine(0.01, 1e-6, 0.25), 1e-6 + (0.01 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine(0.01, 1e-6, 1.0) == 1e-6
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-3)
    candidate = Candidate(fold=0, name="c", lr=1e-3, weight_decay=0.01, model=model, optimizer=optimizer)
    grid = CandidateGrid([candidate], [FoldPlan(fold=0, train=np.array([0]), val=np.array([]), seed=0)], 1)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    for schedule, expected_wd in (("cosine", cosine(0.01, 1e-6, 0.5)), ("constant", 0.01)):
        cfg = ProbeConfig(wd_schedule=schedule, device="cpu")
        StepRunner(grid, np.zeros(1, np.int64), cfg=cfg, precision=cfg.resolve_precision()).update(candidate, 0.5)
        decay, other = optimizer.param_groups
        assert math.isclose(decay["lr"], 5e-4) and math.isclose(other["lr"], 5e-4)
        assert math.isclose(decay["weight_decay"], expected_wd) and other["weight_decay"] == 0.0


def replace_tokens(store, rows, seed):
    group = zarr.open_group(str(store), mode="r+")
    rng = np.random.default_rng(seed)
    for row in rows:
        group["tokens"][row] = rng.standard_normal(group["tokens"].shape[1:]).astype(np.float16) * 3


def test_a_folds_test_videos_never_reach_its_candidates(tmp_path):
    """All folds train from one read of each clip, so fold k's test videos are read while other folds train: with
    them replaced by noise, fold k's trained candidates, chosen candidate and predictions stay bit-identical."""
    cfg = ProbeConfig(lrs=(1e-3, 3e-4), train_clips="one", memory_budget_mb=0, **QUICK)
    store = write_planted_store(tmp_path / "a.zarr", signal=0.6)
    first = run_cv(str(store), tmp_path / "first", cfg, n_folds=4)
    folds = json.loads((tmp_path / "first" / "folds.json").read_text())["folds"]
    subjects = CacheReader(store).subjects
    k = 2
    test_rows = [i for i, s in enumerate(subjects) if s in folds[k]["test_subjects"]]
    replace_tokens(store, test_rows, seed=5)
    second = run_cv(str(store), tmp_path / "second", cfg, n_folds=4, folds_file=tmp_path / "first" / "folds.json")
    weights = [[load_file(str(tmp_path / run / "weights" / f"fold{f}.safetensors")) for run in ("first", "second")]
               for f in range(4)]
    for f, (a, b) in enumerate(weights):
        same = all(torch.equal(a[name], b[name]) for name in a)
        assert same == (f == k), f  # the other folds trained on the replaced videos, fold k never did
    heads = [json.loads((tmp_path / run / "heads.json").read_text())[k] for run in ("first", "second")]
    assert heads[0] == heads[1] and first.selected[k] == second.selected[k]


def count_reads(monkeypatch) -> list:
    calls = []
    original = CacheReader._read

    def counted(self, v, selection=(), **kwargs):
        calls.append((v, selection))
        return original(self, v, selection, **kwargs)
    monkeypatch.setattr(CacheReader, "_read", counted)
    return calls


@pytest.mark.parametrize("schedule,reads_per_epoch", [("all-folds", 1), ("per-fold", 3)])
def test_each_sampled_clip_is_read_once_per_epoch_for_all_folds(tmp_path, monkeypatch, schedule, reads_per_epoch):
    store = write_planted_store(tmp_path / "a.zarr", n_subjects=4, per_class=1)
    calls = count_reads(monkeypatch)
    cfg = ProbeConfig(train_clips="one", memory_budget_mb=0, schedule=schedule, **QUICK)
    run_cv(str(store), tmp_path / "run", cfg, n_folds=4)
    training_reads = [c for c in calls if c[1] != ()]  # single clips; test videos are read whole
    videos = len(CacheReader(store))
    assert len(training_reads) == cfg.epochs * videos * reads_per_epoch
    assert len([c for c in calls if c[1] == ()]) == videos  # every test video scored once


def test_train_log_has_a_row_per_epoch_fold_and_candidate(tmp_path):
    store = write_planted_store(tmp_path / "a.zarr", signal=1.0)
    cfg = ProbeConfig(lrs=(1e-3, 1e-4), val_curve=True, **(QUICK | {"epochs": 5}))
    run_cv(str(store), tmp_path / "run", cfg, n_folds=4)
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 4 * 2
    assert {(r["epoch"], r["fold"], r["head"]) for r in rows} == \
        {(str(e), str(f), h) for e in range(1, 6) for f in range(4) for h in ("lr1e-03_wd0.01", "lr1e-04_wd0.01")}
    assert all(r["val_uar_pbv"] != "" for r in rows)
    for f in range(4):
        fold = [r for r in rows if r["fold"] == str(f) and r["head"] == "lr1e-03_wd0.01"]
        assert float(fold[-1]["train_loss"]) < float(fold[0]["train_loss"])
        assert float(fold[-1]["train_accuracy"]) > 0.6  # chance is 0.25
    plain = run_cv(str(store), tmp_path / "plain", ProbeConfig(lrs=(1e-3, 1e-4), **QUICK), n_folds=4)
    with open(tmp_path / "plain" / "train_log.csv", newline="") as f:
        scored = [r["epoch"] for r in csv.DictReader(f) if r["val_uar_pbv"]]
    assert set(scored) == {"3"} and len(plain.selected) == 4  # validation only where the choice is made


@pytest.mark.parametrize("schedule", ["all-folds", "per-fold"])
def test_both_schedules_learn_planted_signal(tmp_path, schedule):
    store = write_planted_store(tmp_path / "a.zarr", signal=0.6)
    result = run_cv(str(store), tmp_path / "run", ProbeConfig(schedule=schedule, **(QUICK | {"epochs": 8})), n_folds=4)
    assert result.metrics["uar_pbv"]["mean"] > 0.9


def test_cpu_training_scans_tokens_only_when_outputs_are_not_finite_and_still_names_a_bad_video(tmp_path, monkeypatch):
    """On the CPU a non-finite token makes the outputs of the probes that read it non-finite, so the trainer checks a
    batch's tokens only then: finite batches are never scanned (the test pass still checks each video it reads),
    and a NaN token still stops training with the error that names its video."""
    from fer_probe.data.sampling import TokenSource
    from fer_probe.errors import StoreReadError

    store = write_planted_store(tmp_path / "a.zarr", n_subjects=4, per_class=1)
    checked = []
    require_finite = CacheReader.require_finite
    monkeypatch.setattr(CacheReader, "require_finite",
                        lambda self, v, values: checked.append(v) or require_finite(self, v, values))
    run_cv(str(store), tmp_path / "run", ProbeConfig(train_clips="all", memory_budget_mb=0, **QUICK), n_folds=4)
    assert sorted(checked) == list(range(len(CacheReader(store))))  # the test pass, once a video; no batch scan

    with CacheReader(store) as reader:
        row, video = int(reader.rows[3]), reader.ids[3]
    tokens = zarr.open_group(str(store), mode="r+")["tokens"]
    values = tokens[row]
    values[:, :, 2, 3] = np.nan  # every clip and view: whichever is drawn holds it
    tokens[row] = values

    def no_test_pass(*args, **kwargs):
        raise AssertionError("training went on to the test pass")
    monkeypatch.setattr(TokenSource, "test_videos", no_test_pass)
    for train_clips in ("all", "one"):
        with pytest.raises(StoreReadError, match=f"{video} has non-finite"):
            run_cv(str(store), tmp_path / f"bad_{train_clips}",
                   ProbeConfig(train_clips=train_clips, memory_budget_mb=0, **QUICK), n_folds=4)
