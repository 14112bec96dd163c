"""Test helpers that several test modules import: paths, a tiny data.yaml, an independent schema-1 store writer
(with zarr directly, not fer_cache), a tree digest, an extraction in a separate process, the attentive probe's
straightforward computation, and the commands run in-process with their one-line-error check."""

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
ENCODER_FIXTURES = FIXTURES / "encoders"
CREMA_D = FIXTURES / "crema-d"
BIN = Path(sys.executable).parent
os.environ.setdefault("COLUMNS", "200")  # rich wraps long error lines in narrow terminals

TINY_YAML = """\
datasets:
  demo: {{adapter: ravdess, root: {demo}}}
  crema: {{adapter: crema_d, root: {crema}}}
encoders:
  tiny: {{family: vjepa, checkpoint: null, embed_dim: 48, depth: 1, num_heads: 4, resolution: 32, frames_per_clip: 4}}
extraction: {{frames_per_clip: 4, frame_step: 2, clips_per_video: 2, spatial_views: 1, dtype: float16}}
"""


def write_config(folder: Path, demo: Path, extra: str = "") -> Path:
    path = folder / "data.yaml"
    path.write_text(TINY_YAML.format(demo=demo, crema=CREMA_D) + extra)
    return path


def write_planted_store(path: Path, n_subjects: int = 8, per_class: int = 2, classes: int = 4, clips: int = 2,
                        views: int = 1, tokens: int = 16, width: int = 32, signal: float = 1.0, seed: int = 0,
                        shuffle_labels: bool = False, label_names=None, encoder_name: str = "planted",
                        status=None) -> Path:
    """A schema-1 store written with zarr directly (not fer_cache), with class signal planted in the tokens."""
    import zarr

    rng = np.random.default_rng(seed)
    label_names = list(label_names or ["neutral", "happy", "sad", "angry", "fearful", "disgust"][:classes])
    ids, subjects, labels = [], [], []
    for s in range(n_subjects):
        for c in range(classes):
            for r in range(per_class):
                ids.append(f"s{s}_c{c}_r{r}")
                subjects.append(str(s + 1))
                labels.append(c)
    labels = np.array(labels)
    V = len(ids)
    directions = rng.standard_normal((classes, width))
    values = rng.standard_normal((V, clips, views, tokens, width)) + signal * directions[labels][:, None, None, None]
    if shuffle_labels:
        labels = rng.permutation(labels)
    group = zarr.open_group(str(path), mode="w")
    group.create_array("tokens", data=values.astype(np.float16), chunks=(1, 1, 1, tokens, width), compressors=None)
    group["tokens"].attrs["storage_dtype"] = "float16"
    for name, data in (("videos/id", ids), ("videos/path", [f"{i}.mp4" for i in ids]),
                       ("videos/subject", subjects), ("videos/error", [""] * V)):
        group.create_array(name, data=np.array(data, dtype=np.dtypes.StringDType()), chunks=(V,))
    group.create_array("videos/label", data=labels.astype(np.int16), chunks=(V,))
    group.create_array("videos/n_frames", data=np.full(V, 40, dtype=np.int32), chunks=(1,))
    status = np.ones(V, dtype=np.uint8) if status is None else np.asarray(status, dtype=np.uint8)
    group.create_array("videos/status", data=status, chunks=(1,))
    group.create_array("clips/frame_index", data=np.zeros((V, clips, 4), dtype=np.int32), chunks=(1, clips, 4))
    encoder = {"family": encoder_name, "embed_dim": width}
    sampling = {"clips_per_video": clips, "spatial_views": views}
    storage = {"dtype": "float16", "compressor": "none"}
    grid = [1, 1, tokens]
    payload = json.dumps({"encoder": encoder, "sampling": sampling, "storage": storage, "token_grid": grid},
                         sort_keys=True, separators=(",", ":"))
    group.attrs.update({"fer_cache_schema": 1, "dataset": "planted", "label_names": label_names, "encoder": encoder,
                        "sampling": sampling, "token_grid": grid, "storage": storage,
                        "fingerprint": hashlib.sha256(payload.encode()).hexdigest(), "software": {}})
    return path


def tree_digest(path: Path) -> str:
    """sha256 over every file's relative path and bytes: byte-identical stores have equal digests."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def extract_process(config: Path, store: Path, *, fault: str | None = None, batch: str = "3", workers: str = "0",
                    timeout: float = 600, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """`fer-cache extract` as a separate process, interrupted deterministically where `fault` says ("N:KILL" or
    "N:TERM": it signals itself after N committed videos; tests/extract_with_fault.py). Its decode workers,
    orphaned by a SIGKILL, are ended with its group."""
    import signal
    import subprocess
    import tempfile
    arguments = ["extract", "--dataset", "demo", "--encoder", "tiny", "--out", str(store), "--config", str(config),
                 "--workers", workers, "--batch-size", batch, *extra]
    command = [sys.executable, "-m", "tests.extract_with_fault", fault, *arguments] if fault \
        else [str(BIN / "fer-cache"), *arguments]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=Path(__file__).parent.parent)  # the repository: tests.* importable
        try:
            code = process.wait(timeout=timeout)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.seek(0)
        return code, log.read()


ATTRS_SMALL = {"fingerprint": "f", "label_names": ["a", "b", "c"], "encoder": {"embed_dim": 8}, "sampling": {"k": 2},
               "storage": {"dtype": "float16"}, "token_grid": [1, 1, 5]}  # enough for the store, not for verify


def small_videos(n: int, start: int = 0) -> list:
    """VideoItems v{start}.. of three classes and two subjects, for stores written in tests."""
    from fer_cache.inputs.datasets import VideoItem
    return [VideoItem(id=f"v{i}", path=f"a/v{i}.mp4", label=i % 3, label_name="x", subject=str(i % 2 + 1))
            for i in range(start, start + n)]


def new_store(tmp_path: Path, n: int = 3, **layout):
    """A store of n pending videos of 2 clips x 1 view of [5, 8] tokens (the layout's fields override)."""
    from fer_cache.store import schema, writing
    shape = dict(videos=n, clips=2, views=1, tokens=5, width=8, frames_per_clip=4) | layout
    return writing.create_store(tmp_path / "s.zarr", schema.Layout(**shape), small_videos(n), attrs=ATTRS_SMALL)


def tokens(seed: int = 0) -> np.ndarray:
    """Random tokens of one video of new_store's default layout [2, 1, 5, 8]."""
    return np.random.default_rng(seed).standard_normal((2, 1, 5, 8)).astype(np.float32)


def straightforward_logits(probe, tokens):
    """An attentive probe's logits by the straightforward computation (keys and values of every token, SDPA), the
    reference its fast exact path is checked against; float16 CPU tokens widened as the probe's own path does."""
    import torch
    pooler = probe.pooler
    x = tokens.float() if tokens.dtype == torch.float16 and tokens.device.type == "cpu" else tokens
    for block in pooler.blocks:
        x = block(x)  # [B, N, D]
    cross, query = pooler.cross_attention_block, pooler.query_tokens
    y = cross.xattn(query.expand(x.shape[0], -1, -1), cross.norm1(x))  # [B, Q, D]
    return probe.classify(cross.finish(query, y).mean(dim=1))  # [B, C]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(program, *args, cwd=None) -> Ran:
    """`fer-cache ...` or `fer-probe ...` in this process; an exception that escapes the CLI fails the test."""
    from typer.testing import CliRunner

    from fer_cache.cli import app as cache_app
    from fer_probe.cli import app as probe_app
    app = cache_app if program.name == "fer-cache" else probe_app
    here = os.getcwd()
    os.chdir(cwd or here)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(here)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(result, *needles):
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message and "\n" not in message, message
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in message, (needle, message)
