"""Every broken input is recorded with a reason; every valid one is encoded."""

import json

import numpy as np
import zarr
from typer.testing import CliRunner

from fer_cache.cli import app
from fer_cache.store import schema
from tests.helpers import write_config
from tests.reliability.inputs import build_catalogue

runner = CliRunner()


def test_catalogue_of_inputs(tmp_path):
    root = tmp_path / "videos"
    valid, broken, unparseable = build_catalogue(root)
    config = write_config(tmp_path, root)
    scan = runner.invoke(app, ["scan", "--dataset", "demo", "--config", str(config), "--json", "--decode"])
    assert scan.exit_code == 3, scan.output  # it lists errors
    report = json.loads(scan.stdout)
    scanned = {v["id"] for v in report["videos"]}
    errors = {e["path"]: e["reason"] for e in report["errors"]}
    assert scanned == set(valid), (scanned ^ set(valid))
    for path, kind in unparseable.items():
        assert errors.get(path), f"{kind} ({path}) not reported by scan"
    for video_id, kind in broken.items():
        assert any(video_id in path and reason for path, reason in errors.items()), f"{kind} not reported"

    result = runner.invoke(app, ["extract", "--dataset", "demo", "--encoder", "tiny", "--out", str(tmp_path / "s.zarr"),
                                 "--config", str(config), "--workers", "2"])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    ids = schema.read_strings(group["videos/id"])
    status = dict(zip(ids, group["videos/status"][:].tolist()))
    reasons = dict(zip(ids, schema.read_strings(group["videos/error"])))
    assert set(ids) == set(valid) | set(broken)
    for video_id, kind in valid.items():
        assert status[video_id] == schema.DONE, f"{kind}: {reasons[video_id]}"
        assert np.isfinite(group["tokens"][ids.index(video_id)]).all()
    for video_id, kind in broken.items():
        assert status[video_id] == schema.FAILED, kind
        assert reasons[video_id] and "\n" not in reasons[video_id], kind
    output = result.output.replace("\n", " ")
    for video_id in broken:
        assert video_id in output
    for path in unparseable:
        assert path.split("/")[-1] in output
    one_frame = ids.index(next(v for v, k in valid.items() if k == "one frame"))
    assert group["videos/n_frames"][one_frame] == 1
    assert (group["clips/frame_index"][one_frame] == 0).all()  # padded with its only frame
