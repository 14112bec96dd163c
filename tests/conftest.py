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


@pytest.fixture(scope="session")
def protocol_stores(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The paper's protocol from a cache on synthetic videos of different lengths (18-32 frames): a training store
    of 2 clips with 2 augmented copies each, and the dense test store of every clip start (stride 2) that goes with
    it. Returns (data.yaml, training store, dense store)."""
    from typer.testing import CliRunner

    from fer_cache.cli import app
    from fer_cache.inputs.datasets.synthetic import generate_demo_dataset

    folder = tmp_path_factory.mktemp("protocol")
    generate_demo_dataset(folder / "demo", actors=4, repetitions=1, n_frames=18, frames_spread=14, size=48)
    config = write_config(folder, folder / "demo")
    text = config.read_text().replace("dtype: float16}", "dtype: float16, clip_stride: 2, augment: {copies: 2}}")
    config.write_text(text)
    common = ["--dataset", "demo", "--encoder", "tiny", "--config", str(config), "--workers", "0"]
    for out, extra in ((folder / "train.zarr", []), (folder / "dense.zarr", [])):
        if out.name == "dense.zarr":
            config.write_text(text.replace("clips_per_video: 2", "clips_per_video: all")
                              .replace(", augment: {copies: 2}", ""))
        result = CliRunner().invoke(app, ["extract", *common, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
    config.write_text(text)
    return config, folder / "train.zarr", folder / "dense.zarr"
