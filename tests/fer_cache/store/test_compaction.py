"""fer-cache compact: a compact store of the same videos whose coordinates reconstruct the tokens as well as rank R
allows, declared as schema 2, deterministic, resumable, reusing another store's basis; and its refusals."""

import json

import numpy as np
import zarr

from fer_cache.store import Store, schema
from fer_cache.store.audit import verify_store
from tests.helpers import BIN, assert_one_line_error, run, tree_digest, write_planted_store

CACHE = BIN / "fer-cache"


def compact(source, out, *extra):
    return run(CACHE, "compact", source, "--out", out, "--sample-tokens", "500", *extra)


def test_compact_writes_coordinates_on_an_orthonormal_principal_basis(tmp_path):
    full = write_planted_store(tmp_path / "full.zarr", width=32)
    result = compact(full, tmp_path / "c.zarr", "--rank", "8", "--dtype", "float16")
    assert result.returncode == 0, result.stderr
    assert "rank 8 keeps" in result.stdout and "smaller" in result.stdout
    store = Store.open(tmp_path / "c.zarr")
    basis = store.basis
    assert store.group.attrs["fer_cache_schema"] == schema.COMPACT_SCHEMA_VERSION == 2  # schema-1 readers refuse
    assert store.tokens.shape == (64, 2, 1, 16, 8) and basis.components.shape == (8, 32)
    assert np.allclose(basis.components @ basis.components.T, np.eye(8), atol=1e-5)
    assert np.all(np.diff(basis.variance) <= 1e-6) and 0 < basis.explained < 1
    assert store.attrs["storage"]["basis"]["digest"] == basis.digest  # the basis is in the fingerprint
    assert store.attrs["compacted_from"]["fingerprint"] == Store.open(full).attrs["fingerprint"]
    # the coordinates are the projection: reconstruction error = the variance the basis leaves out
    x = schema.decode_tokens(*Store.open(full).read(3, "v"), "float16").reshape(-1, 32)
    z = store.read(3, "v")[0].astype(np.float32).reshape(-1, 8)
    expected = basis.project(x)
    assert np.abs(z - expected).max() < 2e-2 * np.abs(expected).max()
    residual = x - basis.reconstruct(expected)
    assert np.abs(residual @ basis.components.T).max() < 1e-4  # orthogonal to the subspace
    assert verify_store(str(tmp_path / "c.zarr")).ok
    info = run(CACHE, "info", tmp_path / "c.zarr")
    assert "compact: rank 8" in info.stdout and "explained variance by rank: 8:" in info.stdout


def test_compaction_is_deterministic_resumable_and_reuses_a_basis(tmp_path):
    full = write_planted_store(tmp_path / "full.zarr")
    assert compact(full, tmp_path / "a.zarr", "--rank", "6").returncode == 0
    assert compact(full, tmp_path / "b.zarr", "--rank", "6").returncode == 0
    assert tree_digest(tmp_path / "a.zarr") == tree_digest(tmp_path / "b.zarr")
    group = zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")
    group["videos/status"][5:9] = schema.PENDING  # as if interrupted
    again = compact(full, tmp_path / "b.zarr", "--rank", "6")
    assert again.returncode == 0 and "(4 now)" in again.stdout
    assert tree_digest(tmp_path / "a.zarr") == tree_digest(tmp_path / "b.zarr")
    other = write_planted_store(tmp_path / "other.zarr", seed=3, n_subjects=2)
    reused = compact(other, tmp_path / "o.zarr", "--basis-from", tmp_path / "a.zarr")
    assert reused.returncode == 0, reused.stderr
    assert Store.open(tmp_path / "o.zarr").basis.digest == Store.open(tmp_path / "a.zarr").basis.digest


def test_compaction_mistakes_are_one_line_errors(tmp_path):
    full = write_planted_store(tmp_path / "full.zarr", width=32)
    assert_one_line_error(compact(full, tmp_path / "x.zarr", "--rank", "32"), "between 1 and the token width 32")
    assert_one_line_error(compact(full, tmp_path / "x.zarr"), "--rank")
    assert_one_line_error(compact(full, tmp_path / "x.zarr", "--rank", "4", "--dtype", "bfloat16"), "int8 or float16")
    before = tree_digest(full)
    assert_one_line_error(compact(full, full, "--rank", "4", "--overwrite"), "is the store being compacted")
    assert tree_digest(full) == before
    assert compact(full, tmp_path / "c.zarr", "--rank", "4").returncode == 0
    assert_one_line_error(compact(tmp_path / "c.zarr", tmp_path / "y.zarr", "--rank", "2"), "already compact")
    assert_one_line_error(compact(full, tmp_path / "y.zarr", "--basis-from", full), "not a compact store")
    assert_one_line_error(compact(full, tmp_path / "c.zarr", "--rank", "4", "--seed", "1"), "extracted differently",
                          "--overwrite")
    foreign = write_planted_store(tmp_path / "foreign.zarr", width=32, encoder_name="another")
    assert_one_line_error(compact(foreign, tmp_path / "y.zarr", "--basis-from", tmp_path / "c.zarr"),
                          "another encoder")
    assert_one_line_error(compact(full, tmp_path / "y.zarr", "--basis-from", tmp_path / "nowhere.zarr"),
                          "nowhere.zarr: no such store")
    tampered = zarr.open_group(str(tmp_path / "c.zarr"), mode="r+")
    tampered.create_array("basis/components", data=np.zeros((3, 32), np.float32), overwrite=True)  # rank 4 stored
    assert_one_line_error(run(CACHE, "info", tmp_path / "c.zarr"), "do not fit together", "compact it again")
    assert_one_line_error(run(BIN / "fer-probe", "cv", tmp_path / "c.zarr", "--out", tmp_path / "r"),
                          "do not fit together")
    del tampered["basis/mean"]
    assert_one_line_error(run(CACHE, "info", tmp_path / "c.zarr"), "basis/mean")
    assert json.loads(json.dumps(Store.open(full).attrs))["storage"] == {"dtype": "float16", "compressor": "none"}
