"""Face crops on the real CREMA-D clips: the face must be inside every clip's crop."""

import cv2
import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from fer_cache.cli import app
from fer_cache.config import ExtractionConfig
from fer_cache.encoders.weights import IMAGENET
from fer_cache.errors import DecodeError
from fer_cache.inputs.faces import face_boxes, load_detector
from fer_cache.inputs.video import Sampling, clip_frame_indices, cut_clips, decode_video
from tests.helpers import CREMA_D, write_config


def reference_faces(frame):
    """Faces found by another of OpenCV's cascades, at full resolution: an independent look at the same frame."""
    other = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    return other.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 5)


@pytest.mark.parametrize("clip", ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1001_DFA_SAD_XX"])
def test_the_face_is_inside_every_crop(clip):
    frames = decode_video(CREMA_D / f"{clip}.flv", 768, shrink_only=True)  # 480x360: kept as it is
    indices = clip_frame_indices(len(frames), 16, 4, clips_per_video=8)
    boxes = face_boxes(load_detector(), frames, indices, margin=0.25)
    assert len(boxes) == 8
    for clip_indices, box in zip(indices, boxes):
        middle = frames[clip_indices[len(clip_indices) // 2]]
        found = reference_faces(middle)
        assert len(found) >= 1
        x, y, w, h = max(found, key=lambda f: f[2])
        assert box.left <= x and x + w <= box.left + box.size and box.top <= y and y + h <= box.top + box.size
        assert 0.4 < w / box.size < 0.9  # the face fills the crop, with a margin around it


def test_face_crops_are_cut_before_resizing_and_faceless_videos_fail():
    extraction = ExtractionConfig(frames_per_clip=4, frame_step=4, clips_per_video=2, face_crop=True)
    sampling = Sampling.from_config(extraction, 64, normalisation=IMAGENET)
    frames = decode_video(CREMA_D / "1001_DFA_NEU_XX.flv", *sampling.decode_side)
    clips, indices = cut_clips(frames, sampling, load_detector())
    assert clips.shape == (2, 1, 4, 64, 64, 3) and indices.shape == (2, 4)
    with pytest.raises(DecodeError, match="no face found in the 8 frames searched"):
        cut_clips(np.full((40, 120, 160, 3), 90, np.uint8), sampling, load_detector())


def test_a_face_cropped_store_records_it_in_its_fingerprint(tmp_path, demo_small):
    config = write_config(tmp_path, demo_small)
    runner = CliRunner()
    common = ["extract", "--dataset", "crema", "--encoder", "tiny", "--config", str(config), "--workers", "0"]
    assert runner.invoke(app, common + ["--out", str(tmp_path / "full.zarr")]).exit_code == 0
    config.write_text(config.read_text().replace("dtype: float16}", "dtype: float16, face_crop: true}"))
    cropped = runner.invoke(app, common + ["--out", str(tmp_path / "face.zarr")])
    assert cropped.exit_code == 0, cropped.output
    full, face = (zarr.open_group(str(tmp_path / f"{n}.zarr"), mode="r").attrs for n in ("full", "face"))
    assert face["sampling"]["face_crop"] == {"detector": "opencv-haar-frontalface-default", "margin": 0.25}
    assert "face_crop" not in full["sampling"] and face["fingerprint"] != full["fingerprint"]
    again = runner.invoke(app, common + ["--out", str(tmp_path / "full.zarr")])
    assert again.exit_code == 1 and "sampling.face_crop null ->" in " ".join(again.output.split())
