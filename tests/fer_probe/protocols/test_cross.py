"""Cross-dataset evaluation: every test video counts under a declared policy, labels mapped by name."""

import csv
import json

from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.protocols.cross import run_cross
from tests.helpers import write_planted_store

FAST = ProbeConfig.from_recipe("fast", epochs=8, num_heads=4, device="cpu")


def read_predictions(run):
    with open(run / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_cross_dataset_strict_scores_every_video_and_shared_renormalises(tmp_path):
    train = write_planted_store(tmp_path / "a.zarr", classes=4, seed=0)
    test = write_planted_store(tmp_path / "b.zarr", classes=4, seed=0, n_subjects=3,
                               label_names=["neutral", "happy", "sad", "surprised"])
    strict = run_cross(str(train), str(test), tmp_path / "strict", cfg=FAST, policy="strict")
    rows = read_predictions(tmp_path / "strict")
    assert len(rows) == len(CacheReader(test)) == 24
    surprised = [r for r in rows if r["label"] == "surprised"]
    assert surprised and all(r["pred_pbv"] != "surprised" for r in surprised)  # counted as errors
    assert strict.metrics["war_pbv"]["mean"] <= 0.75 + 1e-9
    shared = run_cross(str(train), str(test), tmp_path / "shared", cfg=FAST, policy="shared")
    rows = read_predictions(tmp_path / "shared")
    assert len(rows) == 18 and all(float(r["p_angry"]) == 0 for r in rows)
    assert shared.metrics["uar_pbv"]["mean"] > 0.9
    mapping = json.loads((tmp_path / "shared" / "mapping.json").read_text())
    assert mapping["excluded_videos"] == 6 and mapping["shared_classes"] == ["neutral", "happy", "sad"]


def test_calm_as_neutral_is_explicit(tmp_path):
    train = write_planted_store(tmp_path / "a.zarr", classes=3, label_names=["neutral", "happy", "sad"])
    test = write_planted_store(tmp_path / "b.zarr", classes=3, n_subjects=2, label_names=["calm", "happy", "sad"])
    plain = run_cross(str(train), str(test), tmp_path / "plain", cfg=FAST, policy="strict")
    assert "calm" in plain.class_names
    mapped = run_cross(str(train), str(test), tmp_path / "mapped", cfg=FAST, policy="strict", calm_as_neutral=True)
    assert "calm" not in mapped.class_names
    assert mapped.metrics["uar_pbv"]["mean"] > plain.metrics["uar_pbv"]["mean"]


def test_a_misspelt_policy_is_refused_before_any_store_is_opened(tmp_path):
    from tests.helpers import BIN, assert_one_line_error, run
    result = run(BIN / "fer-probe", "cross", "--train", tmp_path / "missing-a.zarr", "--test",
                 tmp_path / "missing-b.zarr", "--policy", "strcit", "--out", tmp_path / "run")
    assert_one_line_error(result, "policy must be shared or strict, got 'strcit'")
