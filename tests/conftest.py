"""Shared fixtures: small generated datasets and stores (helpers they use: tests/helpers.py)."""

from pathlib import Path

import pytest

from tests.helpers import write_config, write_planted_store


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory) -> Path:
    """4 actors x 6 emotions x 1 repetition of the synthetic faces, 24 frames each."""
    from fer_cache.inputs.datasets.synthetic import generate_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(root, actors=4, repetitions=1, n_frames=24, size=64)
    return root


@pytest.fixture
def tiny_config(tmp_path, demo_small) -> Path:
    return write_config(tmp_path, demo_small)


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory, demo_small) -> Path:
    """One uninterrupted extraction of the small demo set (batch 3, tiny encoder), shared by the comparisons that
    check interrupted, resumed, grown and distributed runs against it."""
    from typer.testing import CliRunner

    from fer_cache.cli import app
    folder = tmp_path_factory.mktemp("ref")
    config = write_config(folder, demo_small)
    result = CliRunner().invoke(app, ["extract", "--dataset", "demo", "--encoder", "tiny", "--out",
                                      str(folder / "ref.zarr"), "--config", str(config), "--workers", "0",
                                      "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    return folder / "ref.zarr"


@pytest.fixture
def planted_store(tmp_path) -> Path:
    return write_planted_store(tmp_path / "planted.zarr")
