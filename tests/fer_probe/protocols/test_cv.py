import csv
import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from typer.testing import CliRunner

from fer_probe.cli import app
from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.errors import FerProbeError, StoreReadError
from fer_probe.protocols.cross import run_cross
from fer_probe.protocols.cv import run_cv
from tests.helpers import write_planted_store

runner = CliRunner()
FAST = ProbeConfig.from_recipe("fast", epochs=8, num_heads=4, device="cpu")


def read_predictions(run):
    with open(run / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("probe", ["attentive", "linear"])
def test_planted_signal_is_learned_and_shuffled_labels_stay_near_chance(tmp_path, probe):
    signal = write_planted_store(tmp_path / "signal.zarr", signal=0.6)
    shuffled = write_planted_store(tmp_path / "shuffled.zarr", signal=0.6, shuffle_labels=True)
    cfg = ProbeConfig(probe=probe, epochs=8, num_heads=4, device="cpu")
    good = run_cv(str(signal), tmp_path / "good", cfg, n_folds=4)
    assert good.metrics["uar_pbv"]["mean"] > 0.9
    bad = run_cv(str(shuffled), tmp_path / "bad", cfg, n_folds=4)
    assert bad.metrics["uar_pbv"]["mean"] < 0.5  # chance is 0.25


def test_run_directory_agrees_with_scikit_learn_and_is_deterministic(tmp_path, planted_store):
    first = run_cv(str(planted_store), tmp_path / "a", FAST, n_folds=4)
    second = run_cv(str(planted_store), tmp_path / "b", FAST, n_folds=4)
    third = run_cv(str(planted_store), tmp_path / "a", FAST, n_folds=4, overwrite=True)
    assert third.metrics == first.metrics
    assert first.metrics == second.metrics
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    assert (tmp_path / "a" / "predictions.csv").read_text() == (tmp_path / "b" / "predictions.csv").read_text()
    rows = read_predictions(tmp_path / "a")
    assert len(rows) == 64 and {r["video_id"] for r in rows} == set(CacheReader(planted_store).ids)
    assert list(rows[0])[:6] == ["fold", "video_id", "subject", "label", "pred_pbv", "pred_mv"]
    assert [c for c in rows[0] if c.startswith("p_")] == ["p_neutral", "p_happy", "p_sad", "p_angry"]
    metrics = first.metrics
    for f in range(4):
        fold_rows = [r for r in rows if r["fold"] == str(f)]
        y = [r["label"] for r in fold_rows]
        for vote in ("pbv", "mv"):
            pred = [r[f"pred_{vote}"] for r in fold_rows]
            assert np.isclose(metrics[f"uar_{vote}"]["per_fold"][f], balanced_accuracy_score(y, pred))
            assert np.isclose(metrics[f"war_{vote}"]["per_fold"][f], accuracy_score(y, pred))
    for row in rows:
        posteriors = [float(row[c]) for c in row if c.startswith("p_")]
        assert np.isclose(sum(posteriors), 1, atol=1e-4)
        assert row["pred_pbv"] == ["neutral", "happy", "sad", "angry"][int(np.argmax(posteriors))]
    folds = json.loads((tmp_path / "a" / "folds.json").read_text())["folds"]
    for fold in folds:
        assert not set(fold["test_subjects"]) & set(fold["train_subjects"])
        tested = {r["subject"] for r in rows if r["fold"] == str(folds.index(fold))}
        assert tested == set(fold["test_subjects"])
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["probe"]["epochs"] == 8 and config["fingerprint"] and config["probe"]["recipe"] == "fast"
    assert config["probe"]["num_heads"] == 4 and config["probe"]["overridden"] == ["epochs"]
    weights = tmp_path / "a" / "weights" / "fold0.safetensors"
    umask = os.umask(0)
    os.umask(umask)
    assert weights.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not safetensors' 0600


def test_several_heads_are_chosen_on_validation_never_on_test(tmp_path, planted_store):
    cfg = ProbeConfig(epochs=4, num_heads=4, device="cpu", lrs=(1e-3, 1e-5), weight_decays=(0.01,))
    result = run_cv(str(planted_store), tmp_path / "heads", cfg, n_folds=4)
    heads = json.loads((tmp_path / "heads" / "heads.json").read_text())
    assert len(heads) == 4 and all(len(h["heads"]) == 2 for h in heads)
    assert all(sum(x["selected"] for x in h["heads"]) == 1 for h in heads)
    assert all("val_uar_pbv" in x for h in heads for x in h["heads"])
    assert result.selected == [next(x["head"] for x in h["heads"] if x["selected"]) for h in heads]


def test_unlabelled_videos_are_left_out_and_counted(tmp_path):
    import zarr
    store = write_planted_store(tmp_path / "u.zarr")
    group = zarr.open_group(str(store), mode="r+")
    labels = group["videos/label"][:]
    labels[:5] = -1
    group["videos/label"][:] = labels
    result = run_cv(str(store), tmp_path / "run", FAST, n_folds=4)
    assert result.unlabelled == 5
    assert len(read_predictions(tmp_path / "run")) == 59
    assert json.loads((tmp_path / "run" / "config.json").read_text())["unlabelled_videos"] == 5


def test_user_mistakes_are_one_line_errors(tmp_path, planted_store):
    other = write_planted_store(tmp_path / "other.zarr", encoder_name="another-encoder")
    with pytest.raises(FerProbeError, match="different encoders"):
        run_cross(str(planted_store), str(other), tmp_path / "x", cfg=FAST)
    incomplete = write_planted_store(tmp_path / "inc.zarr", status=[1] * 60 + [0, 0, 2, 2])
    with pytest.raises(StoreReadError, match="2 pending and 2 failed"):
        CacheReader(incomplete)
    assert len(CacheReader(incomplete, allow_incomplete=True)) == 60
    one_subject = write_planted_store(tmp_path / "one.zarr", n_subjects=1)
    few_videos = write_planted_store(tmp_path / "few.zarr", n_subjects=4, per_class=1)  # 16 videos
    import zarr
    group = zarr.open_group(str(few_videos), mode="r+")
    group["videos/label"][:] = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5], dtype=np.int16)
    group.attrs["label_names"] = ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    (tmp_path / "not_a_store").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    cases = [
        (["cv", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "r1")], "no such store"),
        (["cv", str(tmp_path / "not_a_store"), "--out", str(tmp_path / "r2")], "not a Zarr store"),
        (["cv", str(incomplete), "--out", str(tmp_path / "r3")], "--allow-incomplete"),
        (["cv", str(planted_store), "--folds", "9", "--out", str(tmp_path / "r4")], "more than the 8 subjects"),
        (["cv", str(one_subject), "--out", str(tmp_path / "r4b")], "needs at least 2 subjects"),
        (["cv", str(few_videos), "--folds", "4", "--out", str(tmp_path / "r4c"), "--probe", "linear"],
         "more than the 3 videos of the largest class"),
        (["cv", str(planted_store), "--probe", "transformer", "--out", str(tmp_path / "r5")], "probe must be"),
        (["cv", str(planted_store), "--lr", "fast", "--out", str(tmp_path / "r6")], "comma-separated"),
        (["cv", str(planted_store), "--recipe", "papr", "--out", str(tmp_path / "r6b")], "recipe must be"),
        (["cv", str(planted_store), "--train-clips", "two", "--out", str(tmp_path / "r6c")], "train_clips must be"),
        (["cv", str(planted_store), "--num-heads", "5", "--out", str(tmp_path / "r6d")], "do not divide"),
        (["cv", str(planted_store), "--out", str(tmp_path / "a_file")], "is a file"),
        (["cv", str(planted_store), "--out", str(tmp_path / "used")], "not empty"),
        (["cv", str(planted_store), "--out", str(tmp_path / "used"), "--overwrite"], "not a fer-probe run"),
        (["cross", "--train", str(planted_store), "--test", str(other), "--out", str(tmp_path / "r7")],
         "different encoders"),
        (["cross", "--train", str(planted_store), "--test", str(other), "--policy", "loose",
          "--out", str(tmp_path / "r8")], "policy must be shared or strict"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output.replace("\n", " ") and "Traceback" not in result.output, (args, result.output)
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"  # a folder that is not a run is never cleared


def test_rerunning_into_a_run_directory_replaces_everything_it_owns(tmp_path, planted_store):
    run = tmp_path / "run"
    cfg = ProbeConfig.from_recipe("fast", epochs=2, num_heads=4, device="cpu")
    run_cv(str(planted_store), run, cfg, n_folds=4)
    (run / "report.md").write_text("stale report")
    (run / "confusion_pbv.png").write_bytes(b"stale")
    (run / "nested").mkdir()
    (run / "nested" / "keep.txt").write_text("a folder of the user's")
    with pytest.raises(FerProbeError, match="not empty"):
        run_cv(str(planted_store), run, cfg, n_folds=2)
    run_cv(str(planted_store), run, cfg, n_folds=2, overwrite=True)
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["fold0.safetensors", "fold1.safetensors"]
    assert not (run / "report.md").exists() and not (run / "confusion_pbv.png").exists()
    assert (run / "nested" / "keep.txt").is_file()
    assert json.loads((run / "config.json").read_text())["n_folds"] == 2


def test_a_fold_that_predicts_one_class_is_reported(tmp_path):
    """Constant tokens give constant posteriors: every test video gets one class, and the run says so."""
    store = write_planted_store(tmp_path / "flat.zarr", signal=0.0)
    import zarr
    group = zarr.open_group(str(store), mode="r+")
    group["tokens"][:] = np.ones(group["tokens"].shape, dtype=np.float16)
    result = run_cv(str(store), tmp_path / "run", FAST, n_folds=4)
    assert len(result.warnings) == 4 and all("collapsed" in w for w in result.warnings)
    assert json.loads((tmp_path / "run" / "warnings.json").read_text()) == result.warnings
    cli = runner.invoke(app, ["cv", str(store), "--recipe", "fast", "--epochs", "2", "--folds", "4", "--out",
                              str(tmp_path / "cli")])
    assert cli.exit_code == 0 and "collapsed" in cli.output


def test_cli_cv_with_reused_folds_file(tmp_path, planted_store):
    args = ["cv", str(planted_store), "--probe", "linear", "--epochs", "3", "--num-heads", "4", "--device", "cpu",
            "--folds", "4"]
    first = runner.invoke(app, args + ["--out", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    assert "uar_pbv" in first.output
    again = runner.invoke(app, args + ["--out", str(tmp_path / "two"), "--folds-file",
                                       str(tmp_path / "one" / "folds.json")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "one" / "folds.json").read_text() == (tmp_path / "two" / "folds.json").read_text()
    leaky = json.loads((tmp_path / "one" / "folds.json").read_text())
    leaky["folds"][1]["test_subjects"].append(leaky["folds"][1]["train_subjects"][0])
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    result = runner.invoke(app, args + ["--out", str(tmp_path / "three"), "--folds-file", str(tmp_path / "leaky.json")])
    assert result.exit_code == 1 and "both train and test" in result.output


def test_cpu_bfloat16_runs_multiply_the_tokens_in_bfloat16_and_learn_what_float32_learns(tmp_path, monkeypatch):
    """The reader hands out float16 as stored; the streamed pooling gets bfloat16 as its matmul dtype, training and
    scoring alike, and the posteriors stay close to the exact float32 run's."""
    from fer_probe.probes import pooling
    store = write_planted_store(tmp_path / "s.zarr", signal=0.6)
    exact = run_cv(str(store), tmp_path / "float32", FAST, n_folds=4)
    asked = set()
    apply = pooling.StreamedPool.apply
    monkeypatch.setattr(pooling.StreamedPool, "apply", lambda x, u, eps, dtype=None:
                        asked.add((x.dtype, dtype)) or apply(x, u, eps, dtype))
    fast = run_cv(str(store), tmp_path / "bfloat16", ProbeConfig.from_recipe("fast", epochs=8, num_heads=4,
                                                                            device="cpu", precision="bfloat16"),
                  n_folds=4)
    assert asked == {(torch.float16, torch.bfloat16)}
    assert fast.metrics["uar_pbv"]["mean"] > 0.9
    for a, b in zip(exact.folds, fast.folds):
        assert max(np.abs(pa - pb).max() for pa, pb in zip(a.clip_posteriors, b.clip_posteriors)) < 0.1


def test_a_batch_larger_than_the_store_is_said(tmp_path, planted_store):
    cfg = ProbeConfig.from_recipe("fast", epochs=1, num_heads=4, device="cpu", batch_size=100000)
    result = run_cv(str(planted_store), tmp_path / "run", cfg, n_folds=4)
    assert any("batch size 100000 is more than the store's 64 videos" in note for note in result.notes)


def test_a_test_store_of_the_same_videos_scores_each_folds_test_videos(tmp_path):
    """Train on one store's clips and score on another sampling of the same videos (issue 32, item 3): every test
    video is scored from the test store, clip by clip; stores of other videos or encoders are refused in one line."""
    train = write_planted_store(tmp_path / "train.zarr", clips=2, seed=0)
    dense = write_planted_store(tmp_path / "dense.zarr", clips=5, seed=1)  # the same ids, subjects and labels
    cfg = ProbeConfig.from_recipe("paper", epochs=2, device="cpu", num_heads=4, test_clips="each")
    result = run_cv(str(train), tmp_path / "run", cfg, n_folds=2, test_store=str(dense))
    assert all(len(p) == 5 for fold in result.folds for p in fold.clip_posteriors)  # the dense store's 5 clips
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["test_store"] == str(dense) and config["store"] == str(train)
    cli = CliRunner().invoke(app, ["cv", str(train), "--test-store", str(dense), "--test-clips", "each", "--epochs",
                                   "1", "--folds", "2", "--num-heads", "4", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    assert CliRunner().invoke(app, ["report", str(tmp_path / "cli")]).exit_code == 0
    assert f"tested on `{dense}`'s" in (tmp_path / "cli" / "report.md").read_text()
    other = write_planted_store(tmp_path / "other.zarr", n_subjects=4)
    with pytest.raises(FerProbeError, match="other.zarr: test video .*: no such video; test on a store extracted"):
        run_cv(str(train), tmp_path / "r2", cfg, n_folds=2, test_store=str(other))
    foreign = write_planted_store(tmp_path / "foreign.zarr", encoder_name="another")
    with pytest.raises(FerProbeError, match="foreign.zarr was extracted with another encoder"):
        run_cv(str(train), tmp_path / "r3", cfg, n_folds=2, test_store=str(foreign))
