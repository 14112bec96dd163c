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
