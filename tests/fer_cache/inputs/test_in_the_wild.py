"""DFEW, FERV39k and MAFW in their official layouts (generated here, tiny), frame-folder videos, official folds."""

import csv
import json

import av
import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from fer_cache.cli import app
from fer_cache.config import DatasetConfig, load_config
from fer_cache.errors import ConfigError, DecodeError
from fer_cache.inputs.datasets import scan_dataset
from fer_cache.inputs.video import decode_video
from fer_cache.store import schema
from fer_probe.cli import app as probe_app

runner = CliRunner()
DFEW_CODES = {"happy": 1, "sad": 2, "neutral": 3, "angry": 4, "surprised": 5, "disgust": 6, "fearful": 7}


def write_image(path, image):
    codec = "png" if path.suffix == ".png" else "mjpeg"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = image.shape[1], image.shape[0]
        stream.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_folder(folder, n, name=lambda i: f"{i}.jpg", seed=0, size=32):
    """n frames whose brightness encodes their 1-based index (frame i has level 20 * i)."""
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        image = np.clip(20 * i + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)
        write_image(folder / name(i), image)


def crlf(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


def build_dfew(root, missing=None):
    """10 clips, fold k tests clips 2k-1 and 2k; released layout: unpadded ids, 1-based labels, CRLF."""
    labels = ["happy", "sad", "neutral", "angry", "surprised", "disgust", "fearful", "happy", "sad", "neutral"]
    for clip in range(1, 11):
        if clip != missing:
            frame_folder(root / "Clip" / "clip_224x224" / f"{clip:05d}", 6, lambda i, c=clip: f"{c:05d}_{i:05d}.jpg",
                         seed=clip)
    for fold in range(1, 6):
        test = [2 * fold - 1, 2 * fold]
        for kind, clips in (("test", test), ("train", [c for c in range(1, 11) if c not in test])):
            crlf(root / "EmoLabel_DataSplit" / f"{kind}(single-labeled)" / f"set_{fold}.csv",
                 ["video_name,label"] + [f"{c},{DFEW_CODES[labels[c - 1]]}" for c in clips])
    return labels


def build_ferv39k(root):
    entries = {"train": ["Action/Happy/0001", "Crime/Sad/0001", "Talkshow/Neutral/0007", "War/Fear/0012"],
               "test": ["Action/Surprise/0003", "School/Angry/0001"]}
    for split, keys in entries.items():
        for n, key in enumerate(keys):
            frame_folder(root / "2_ClipsforFaceCrop" / key, 5, lambda i: f"{i:02d}.jpg", seed=n)
        crlf(root / "4_setups" / "All_scenes" / f"{split}_All.csv", [f"{k} {k.split('/')[1]}" for k in keys])


def build_mafw(root):
    names = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
             "helplessness"]
    for clip in range(1, 11):
        folder = root / "data" / "frames" / f"{clip:05d}"
        frame_folder(folder, 5, lambda i: f"{i - 1}.png", seed=clip)  # 0.png ... 4.png
        (folder / "Thumbs.db").write_bytes(b"not a frame")
    for fold in range(1, 6):
        test = [2 * fold - 1, 2 * fold]
        folder = root / "Train & Test Set" / "single" / "no_caption" / f"set_{fold}"
        crlf(folder / "test.txt", [f"{c:05d}.mp4 {names[c - 1]}" for c in test])
        crlf(folder / "train.txt", [f"{c:05d}.mp4 {names[c - 1]}" for c in range(1, 11) if c not in test])
    return names


def test_frame_folders_decode_in_frame_order_like_videos(tmp_path):
    frame_folder(tmp_path / "clip", 12)  # 1.jpg ... 12.jpg: lexicographic order would put 10-12 after 1
    (tmp_path / "clip" / "notes.txt").write_text("ignored")
    frames = decode_video(tmp_path / "clip", 16)
    assert frames.shape == (12, 16, 16, 3)
    levels = frames.reshape(12, -1).mean(axis=1)
    assert np.all(np.diff(levels) > 10)  # frame i is brighter than frame i - 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DecodeError, match="no image frames"):
        decode_video(tmp_path / "empty", 16)
    (tmp_path / "clip" / "7.jpg").write_bytes(b"broken")
    with pytest.raises(DecodeError, match=r"frame 7 of 12 \(7.jpg\) cannot be decoded"):
        decode_video(tmp_path / "clip", 16)


def test_dfew_scan_reads_the_released_split_files(tmp_path):
    labels = build_dfew(tmp_path, missing=9)
    result = scan_dataset(DatasetConfig(name="dfew", adapter="dfew", root=tmp_path))
    assert [v.id for v in result.videos] == [f"{c:05d}" for c in range(1, 11) if c != 9]
    assert [v.label_name for v in result.videos] == [labels[c - 1] for c in range(1, 11) if c != 9]
    assert [v.split for v in result.videos][:4] == ["test:1", "test:1", "test:2", "test:2"]
    assert all(v.subject == "" for v in result.videos)
    assert result.videos[0].path == "Clip/clip_224x224/00001"
    assert result.errors == [("Clip/clip_224x224/00009", "named in set_5.csv line 2 but not found under the root")]


def test_ferv39k_keys_are_whole_paths(tmp_path):
    build_ferv39k(tmp_path)
    result = scan_dataset(DatasetConfig(name="f", adapter="ferv39k", root=tmp_path))
    ids = [v.id for v in result.videos]
    assert "Action/Happy/0001" in ids and "Crime/Sad/0001" in ids  # the 4-digit ids repeat across folders
    assert {v.id: v.label_name for v in result.videos}["War/Fear/0012"] == "fearful"
    assert {v.split for v in result.videos} == {"train", "test"} and not result.errors


def test_mafw_scan_maps_names_and_ignores_other_files(tmp_path):
    names = build_mafw(tmp_path)
    result = scan_dataset(DatasetConfig(name="m", adapter="mafw", root=tmp_path))
    assert not result.errors
    assert [v.label_name for v in result.videos] == ["angry", "disgust", "fearful", "happy", "neutral", "sad",
                                                     "surprised", "contempt", "anxiety", "helplessness"]
    assert len(names) == len(result.videos) and result.videos[4].split == "test:3"
    assert decode_video(tmp_path / result.videos[0].path, 16).shape[0] == 5  # Thumbs.db is not a frame


def test_source_is_checked_per_adapter(tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text(f"datasets:\n  d: {{adapter: dfew, root: {tmp_path}, source: faces}}\n")
    with pytest.raises(ConfigError, match="'source' must be frames or videos"):
        load_config(config)
    config.write_text(f"datasets:\n  r: {{adapter: ravdess, root: {tmp_path}, source: frames}}\n")
    with pytest.raises(ConfigError, match="only dfew, ferv39k, mafw"):
        load_config(config)


def test_dfew_extracts_and_cross_validates_on_its_official_folds(tmp_path):
    root = tmp_path / "DFEW"
    build_dfew(root)
    config = tmp_path / "data.yaml"
    config.write_text(f"""\
datasets:
  dfew: {{adapter: dfew, root: {root}, source: frames}}
encoders:
  tiny: {{family: vjepa, checkpoint: null, embed_dim: 48, depth: 1, num_heads: 4, resolution: 32, frames_per_clip: 4}}
extraction: {{frames_per_clip: 4, frame_step: 1, clips_per_video: 2, spatial_views: 1, dtype: float16}}
""")
    scan = runner.invoke(app, ["scan", "--dataset", "dfew", "--config", str(config), "--json"])
    assert scan.exit_code == 0, scan.output
    assert json.loads(scan.stdout)["videos"][0] == {"id": "00001", "path": "Clip/clip_224x224/00001", "label": 2,
                                                         "label_name": "happy", "subject": "", "split": "test:1"}
    store = tmp_path / "dfew.zarr"
    result = runner.invoke(app, ["extract", "--dataset", "dfew", "--encoder", "tiny", "--out", str(store),
                                 "--config", str(config), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert schema.read_strings(zarr.open_group(str(store), mode="r")["videos/split"])[9] == "test:5"
    subject_folds = runner.invoke(probe_app, ["cv", str(store), "--out", str(tmp_path / "x")])
    assert subject_folds.exit_code == 1 and "--folds official" in subject_folds.stderr
    run = tmp_path / "run"
    cv = runner.invoke(probe_app, ["cv", str(store), "--folds", "official", "--epochs", "2", "--out", str(run)])
    assert cv.exit_code == 0, cv.output
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["fold"], r["video_id"]) for r in rows][:3] == [("0", "00001"), ("0", "00002"), ("1", "00003")]
    folds = json.loads((run / "folds.json").read_text())
    assert folds["official"] and folds["folds"][4]["test_videos"] == ["00009", "00010"]
    assert runner.invoke(probe_app, ["report", str(run)]).exit_code == 0
    report = (run / "report.md").read_text()
    assert "official folds of the dataset (by clip)" in report and "no subject independence is claimed" in report
