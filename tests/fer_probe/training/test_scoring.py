"""Posteriors of every scored clip view: several probes from one read equal each probe alone, and the shared
policy's class mask renormalises over the allowed classes."""

import numpy as np
import torch

from fer_probe.config import ProbeConfig
from fer_probe.data.reader import CacheReader
from fer_probe.data.sampling import TokenSource
from fer_probe.probes import build_probe
from fer_probe.training.scoring import video_posteriors
from tests.helpers import write_planted_store


def test_posteriors_of_several_probes_equal_each_alone_and_masks_renormalise(tmp_path):
    store = write_planted_store(tmp_path / "s.zarr", clips=3)
    cfg = ProbeConfig.from_recipe("fast", device="cpu", num_heads=4)
    torch.manual_seed(0)
    probes = [build_probe("attentive", 32, 4, num_heads=4), build_probe("attentive", 32, 4, num_heads=4)]
    with CacheReader(store) as reader:
        source = TokenSource(reader)
        both = video_posteriors(source, probes, [0, 1], cfg=cfg)
        alone = video_posteriors(source, probes[1:], [0, 1], cfg=cfg)
        for v in range(2):
            assert both[v][0].shape == (3, 4)  # a posterior per clip view
            np.testing.assert_allclose(both[v][1], alone[v][0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(both[v][0].sum(axis=1), 1.0, rtol=1e-6)
            manual = torch.softmax(probes[0](reader.video(v).reshape(3, 16, 32)), dim=-1).detach().numpy()
            np.testing.assert_allclose(both[v][0], manual, rtol=1e-4, atol=1e-6)
        mask = np.array([True, False, True, False])
        masked = video_posteriors(source, probes[:1], [0], cfg=cfg, class_mask=mask)[0][0]
        assert (masked[:, ~mask] == 0).all()
        np.testing.assert_allclose(masked.sum(axis=1), 1.0, rtol=1e-6)


def test_each_clip_scored_alone_votes_over_the_videos_own_clips_as_a_straightforward_loop(tmp_path):
    """--test-clips each: a probe trained on concatenated clips scores one clip view at a time, as the reference's
    final evaluation does; PBV sums those posteriors and MV votes over them (issue 32, item 3)."""
    import csv

    from fer_probe.protocols.cv import run_cv
    from fer_probe.results.metrics import majority_vote
    from fer_probe.results.outputs import read_probe
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2, signal=0.5)
    cfg = ProbeConfig.from_recipe("paper", epochs=2, device="cpu", num_heads=4, test_clips="each")
    result = run_cv(str(store), tmp_path / "run", cfg, n_folds=2)
    assert not result.one_posterior_per_video and all(len(p) == 6 for p in result.folds[0].clip_posteriors)
    probe, _ = read_probe(tmp_path / "run" / "weights" / "fold0.safetensors")
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "predictions.csv")) if r["fold"] == "0"]
    with CacheReader(store) as reader:
        position = {video_id: i for i, video_id in enumerate(reader.ids)}
        for row in rows:
            video = reader.video(position[row["video_id"]])  # [K, S, N, D]
            posteriors = np.stack([torch.softmax(probe(video[k, s][None]), dim=-1)[0].detach().numpy()
                                   for k in range(3) for s in range(2)])  # one pass per clip view, in a loop
            names = reader.label_names
            assert row["pred_pbv"] == names[int(posteriors.sum(axis=0).argmax())]
            assert row["pred_mv"] == names[majority_vote(posteriors)]
            summed = posteriors.sum(axis=0) / posteriors.sum()
            np.testing.assert_allclose([float(row[f"p_{n}"]) for n in names], summed, rtol=1e-4, atol=1e-6)
