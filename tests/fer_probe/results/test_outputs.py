"""The run directory: refused or replaced as asked, weights readable by anyone, and a write that fails says what was
kept."""

import os

import pytest

from fer_probe.errors import FerProbeError, RunDirectoryError
from fer_probe.results.outputs import prepare_run_dir, writing


def test_a_run_directory_is_refused_replaced_or_kept_as_asked(tmp_path):
    run = prepare_run_dir(tmp_path / "run", overwrite=False)
    (run / "config.json").write_text('{"command": "cv"}')
    (run / "metrics.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not empty"):
        prepare_run_dir(run, overwrite=False)
    prepare_run_dir(run, overwrite=True)
    assert not (run / "metrics.json").exists() and (run / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FerProbeError, match="not a fer-probe run directory"):
        prepare_run_dir(other, overwrite=True)
    assert (other / "keep.txt").exists()


def test_a_failed_write_names_what_was_lost_and_kept(tmp_path):
    with pytest.raises(FerProbeError, match="the probe weights could not be written to .* \\(disk full\\); "
                                            "metrics.json and predictions.csv are written"):
        with writing(tmp_path, "the probe weights", kept="metrics.json and predictions.csv are written"):
            raise OSError("disk full")
    with pytest.raises(FerProbeError, match="no results were kept"):
        with writing(tmp_path, "metrics.json"):
            raise OSError(28, "No space left on device")
    with writing(tmp_path, "nothing"):  # no failure, nothing said
        pass
    assert os.listdir(tmp_path) == []


def test_damaged_or_foreign_weights_are_refused_in_one_line(tmp_path):
    import pytest
    import torch
    from safetensors.torch import save_file

    from fer_probe.errors import FerProbeError
    from fer_probe.results.outputs import read_probe
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(b"\x10\x00\x00")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))  # no fer-probe metadata
    unknown = tmp_path / "unknown.safetensors"
    save_file({"w": torch.zeros(2)}, str(unknown), metadata={"probe": "transformer", "width": "2", "classes": "[]"})
    for path, needle in ((truncated, "not probe weights"), (foreign, "not probe weights"),
                         (unknown, "unknown probe 'transformer'")):
        with pytest.raises(FerProbeError, match=needle) as raised:
            read_probe(path)
        assert str(path) in str(raised.value) and "\n" not in str(raised.value)
