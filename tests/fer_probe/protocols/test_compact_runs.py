"""Runs on a compact store give the posteriors of the same runs on a full float32 store that holds the tokens its
coordinates stand for (written here independently, with zarr), for the attentive probe and the linear baseline, in
cross-validation and across two stores with different bases."""

import numpy as np
import pytest
import zarr

from fer_cache.store.compaction import CompactRequest, compact_store
from fer_probe.config import ProbeConfig
from fer_probe.protocols.cross import run_cross
from fer_probe.protocols.cv import run_cv
from tests.helpers import write_planted_store

ATTENTIVE = ProbeConfig.from_recipe("fast", epochs=3, num_heads=4, device="cpu")
LINEAR = ProbeConfig.from_recipe("fast", probe="linear", epochs=3, device="cpu")


def reconstruction(compact, out):
    """The compact store's x~ = mean + z @ components as a schema-1 float32 store, with zarr directly."""
    source = zarr.open_group(str(compact), mode="r")
    scale = source["tokens_scale"][...][..., None] if "tokens_scale" in source else 1.0
    z = source["tokens"][...].astype(np.float32) * scale  # [V, K, S, N, R]
    tokens = source["basis/mean"][...] + z @ source["basis/components"][...]  # [V, K, S, N, D]
    group = zarr.open_group(str(out), mode="w")
    group.create_array("tokens", data=tokens.astype(np.float32), chunks=(1, 1, 1, *tokens.shape[3:]))
    group["tokens"].attrs["storage_dtype"] = "float32"
    for name in ("videos/id", "videos/path", "videos/subject", "videos/error", "videos/label", "videos/n_frames",
                 "videos/status", "clips/frame_index"):
        group.create_array(name, data=source[name][...], chunks=source[name].chunks)
    attrs = dict(source.attrs)
    attrs["storage"] = {"dtype": "float32", "compressor": "none"}
    group.attrs.update(attrs | {"fer_cache_schema": 1})
    return out


def compacted(tmp_path, name, seed, rank=8, dtype="int8", **planted):
    full = write_planted_store(tmp_path / f"{name}-full.zarr", seed=seed, **planted)
    out = tmp_path / f"{name}.zarr"
    compact_store(CompactRequest(source=str(full), out=str(out), rank=rank, dtype=dtype, sample_tokens=400,
                                 seed=seed))
    return out, reconstruction(out, tmp_path / f"{name}-x.zarr")


def assert_same_posteriors(a, b):
    for fold_a, fold_b in zip(a.folds, b.folds, strict=True):
        assert fold_a.video_ids == fold_b.video_ids
        for pa, pb in zip(fold_a.clip_posteriors, fold_b.clip_posteriors, strict=True):
            assert np.abs(pa - pb).max() < 1e-4


@pytest.mark.parametrize("cfg", [ATTENTIVE, LINEAR], ids=["attentive", "linear"])
def test_cv_on_a_compact_store_equals_cv_on_its_reconstruction(tmp_path, cfg):
    compact, full = compacted(tmp_path, "a", seed=0)
    on_compact = run_cv(str(compact), tmp_path / "compact", cfg, n_folds=4)
    on_full = run_cv(str(full), tmp_path / "full", cfg, n_folds=4)
    assert_same_posteriors(on_compact, on_full)
    assert on_compact.metrics["uar_pbv"]["mean"] > 0.35  # above chance (0.25): the signal survives rank 8 of 32
    report = (tmp_path / "compact" / "config.json").read_text()
    assert '"basis"' in report and '"rank": 8' in report
    from fer_probe.results.plots import embedding_plot  # a probe's pooled vectors, from the coordinates lifted
    assert embedding_plot(str(compact), tmp_path / "embed.png", run=tmp_path / "compact").is_file()


def test_cross_between_compact_stores_of_two_bases_equals_cross_on_their_reconstructions(tmp_path):
    train, train_full = compacted(tmp_path, "a", seed=0)
    test, test_full = compacted(tmp_path, "b", seed=0, n_subjects=3, dtype="float16", rank=6)
    assert zarr.open_group(str(train)).attrs["storage"]["basis"]["digest"] != \
        zarr.open_group(str(test)).attrs["storage"]["basis"]["digest"]
    on_compact = run_cross(str(train), str(test), tmp_path / "compact", cfg=ATTENTIVE)
    on_full = run_cross(str(train_full), str(test_full), tmp_path / "full", cfg=ATTENTIVE)
    assert_same_posteriors(on_compact, on_full)


def test_ablate_versus_measures_what_compaction_costs(tmp_path):
    """A user checks a compaction against its full store: the same folds and videos, a paired comparison, and the
    compact store named with its rank in the ablation."""
    from fer_probe.protocols.ablate import run_ablation
    full = write_planted_store(tmp_path / "full.zarr", seed=0)
    compact = tmp_path / "c.zarr"
    compact_store(CompactRequest(source=str(full), out=str(compact), rank=8, sample_tokens=400))
    summary = run_ablation(str(full), tmp_path / "ablate", ATTENTIVE, n_folds=4, versus=[str(compact)],
                           stores_only=True)
    assert len(summary.variants) == 2 and all(0 <= v.uar_pbv <= 1 for v in summary.variants)
    text = (tmp_path / "ablate" / "ablation.md").read_text()
    assert "c.zarr: planted 32, compact: rank 8" in text and "store (full.zarr vs c.zarr)" in text
