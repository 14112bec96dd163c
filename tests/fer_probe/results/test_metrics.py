import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from fer_probe.results.metrics import FoldPredictions, bootstrap_ci, confusion, majority_vote, pbv, summarise, uar, war


def test_uar_war_confusion_match_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 5, 60)
        p = np.where(rng.random(60) < 0.5, y, rng.integers(0, 6, 60))
        assert np.isclose(uar(y, p), balanced_accuracy_score(y, p))
        assert np.isclose(war(y, p), accuracy_score(y, p))
        assert (confusion(y, p, 6) == confusion_matrix(y, p, labels=range(6))).all()


def test_pbv_and_majority_vote_with_tie_rule():
    posteriors = np.array([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25], [0.05, 0.9, 0.05]])
    pred, total = pbv(posteriors)
    assert pred == 1 and np.allclose(total, [0.85 / 3, 1.6 / 3, 0.55 / 3])  # summed posteriors decide
    assert majority_vote(posteriors) == 0  # two of three votes
    tie = np.array([[0.51, 0.49, 0.0], [0.0, 0.1, 0.9]])  # one vote each for 0 and 2
    assert majority_vote(tie) == 2  # the tied class with the higher summed posterior


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_data():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    low, high = bootstrap_ci(y, p, uar, n_boot=300)
    assert low <= uar(y, p) <= high
    small_low, small_high = bootstrap_ci(y[:30], p[:30], uar, n_boot=300)
    assert (high - low) < (small_high - small_low)


def test_summary_schema_and_values():
    rng = np.random.default_rng(2)
    folds = []
    for f in range(3):
        labels = rng.integers(0, 4, 10)
        posteriors = [rng.dirichlet(np.ones(4), size=5) for _ in labels]
        folds.append(FoldPredictions(fold=f, video_ids=[f"v{f}_{i}" for i in range(10)], subjects=["s"] * 10,
                                     labels=labels, clip_posteriors=posteriors))
    metrics = summarise(folds, n_boot=100)
    assert set(metrics) == {"uar_pbv", "war_pbv", "uar_mv", "war_mv", "uar_clip", "war_clip"}
    for m in metrics.values():
        assert set(m) == {"mean", "std", "ci95", "per_fold"} and len(m["per_fold"]) == 3
        assert 0 <= m["ci95"][0] <= m["ci95"][1] <= 1
        assert np.isclose(m["mean"], np.mean(m["per_fold"]))
    pred = folds[0].video_level()[0]
    assert np.isclose(metrics["war_pbv"]["per_fold"][0], accuracy_score(folds[0].labels, pred))


def test_a_p_value_no_resample_reached_reads_as_below_one_over_the_resamples():
    from fer_probe.results.metrics import N_BOOT, p_text, paired_bootstrap, uar
    y = np.repeat(np.arange(3), 40)
    test = paired_bootstrap(y, y, (y + 1) % 3, metric=uar)  # a perfect probe against an always-wrong one
    assert test["p_value"] == 0 and N_BOOT == 1000
    assert p_text(test["p_value"]) == "< 0.001" and p_text(0.0, relation=True) == "< 0.001"
    assert p_text(0.004) == "0.004" and p_text(0.004, relation=True) == "= 0.004"
