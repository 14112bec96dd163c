"""Stage 1 pipeline: decode workers -> batched frozen encoder -> a writer thread that commits whole videos.

Axes: K clips per video, S views, T frames, h/w crop pixels, B clips in a batch, N tokens, D width.
"""

import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fer_cache import store as st
from fer_cache.batching import BatchEncoder, DecodedVideo, Writer
from fer_cache.config import Config, check_extraction
from fer_cache.datasets import ScanResult, scan_dataset
from fer_cache.distributed import DistInfo, barrier, init_distributed, resolve_device
from fer_cache.encoders import build_encoder, describe_encoder
from fer_cache.errors import DecodeError, FerCacheError
from fer_cache.video import Sampling, cut_clips, decode_video


@dataclass
class ExtractSummary:
    store: str
    total: int
    done: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video id, reason) from the store
    scan_errors: list[tuple[str, str]] = field(default_factory=list)  # files that never became videos
    encoded_now: int = 0  # videos encoded by this run (resumed ones excluded)
    clips_now: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 3 if (self.failed or self.scan_errors or self.interrupted) else 0


class VideoClips(Dataset):
    """One item per video: decoded once, all clips and views cut from the same frames (runs in workers)."""

    def __init__(self, root: Path, jobs: list[tuple[int, str]], sampling: Sampling):
        self.root, self.jobs, self.sampling = root, jobs, sampling

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> DecodedVideo:
        index, rel = self.jobs[i]
        try:
            frames = decode_video(self.root / rel, self.sampling.resize)  # [F, H, W, 3]
            clips, frame_index = cut_clips(frames, self.sampling)
        except DecodeError as exc:
            return DecodedVideo(index, None, None, 0, str(exc))
        return DecodedVideo(index, torch.from_numpy(np.ascontiguousarray(clips)), frame_index, len(frames))


def quiet_worker(_: int) -> None:
    """Ctrl-C reaches the whole process group: decode workers leave it to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def keep_one(items: list[DecodedVideo]) -> DecodedVideo:
    return items[0]


class StopFlag:
    """SIGINT/SIGTERM ask for a clean stop after the current write; a second signal is left to the default."""

    def __init__(self):
        self.raised = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum, frame) -> None:
        self.raised = True
        signal.signal(signum, self.previous.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def prepare_store(out: str, overwrite: bool, layout: st.Layout, scan: ScanResult, attrs: dict, info: DistInfo):
    """Rank 0 creates or checks the store; the others open it once it exists."""
    exists = (Path(out) / "zarr.json").exists() if not st.is_url(out) else _url_exists(out)
    if info.rank == 0:
        if exists and not overwrite:
            group = st.open_group(out, mode="r+")
            st.ensure_compatible(group, out, attrs["fingerprint"], scan.videos)
        else:
            if not st.is_url(out) and Path(out).exists() and not st.is_replaceable(Path(out)):
                raise FerCacheError(f"{out} exists and is not a fer-cache store; choose another --out (nothing was "
                                    "changed there)")
            try:
                group = st.create_store(out, layout, scan.videos, attrs)
            except OSError as exc:
                raise FerCacheError(f"cannot write the store at {out}: {exc.strerror or exc}; choose a writable "
                                    "--out") from exc
    barrier(info)
    if info.rank != 0:
        group = st.open_group(out, mode="r+")
    return group


def _url_exists(url: str) -> bool:
    import fsspec
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(f"{path.rstrip('/')}/zarr.json")


def store_attrs(dataset: str, scan: ScanResult, encoder, sampling: Sampling, dtype: str, compressor: str) -> dict:
    encoder_attrs = describe_encoder(encoder)
    storage = {"dtype": dtype, "compressor": compressor}
    token_grid = list(encoder.cfg.token_grid)
    return {"dataset": dataset, "label_names": list(scan.label_names), "encoder": encoder_attrs,
            "sampling": sampling.as_attrs(), "token_grid": token_grid, "storage": storage,
            "fingerprint": st.fingerprint(encoder_attrs, sampling.as_attrs(), storage, token_grid),
            "software": st.software_versions()}


def run_extraction(config: Config, dataset: str, encoder: str, out: str, device: str = "auto",
                   batch_size: int = 8, workers: int = 2, limit: int | None = None, overwrite: bool = False,
                   compile_model: bool = False, on_start: Callable[[int, int], None] | None = None,
                   on_advance: Callable[[int, int, int], None] | None = None) -> ExtractSummary:
    """Encode every pending video of `dataset` into `out`; resumable, safe to interrupt, multi-rank aware."""
    started = time.perf_counter()
    dataset_cfg, encoder_cfg = config.dataset(dataset), config.encoder(encoder)
    extraction = check_extraction(config.extraction_for(encoder_cfg), f"{config.path} (extraction)")
    scan = scan_dataset(dataset_cfg)
    if not scan.videos:
        raise FerCacheError(f"dataset '{dataset}': no videos to extract under {dataset_cfg.root} "
                            f"({len(scan.errors)} files could not be used, {scan.skipped} left out by filters); "
                            "run fer-cache scan to see why")
    if limit is not None:
        scan.videos = scan.videos[:limit]
    info = init_distributed(device)
    torch_device = resolve_device(device, info.local_rank)
    kwargs = encoder_cfg.build_kwargs() | {"frames_per_clip": extraction.frames_per_clip}
    model = build_encoder(**kwargs, device=torch_device)
    resolution = model.cfg.resolution
    sampling = Sampling(extraction.frames_per_clip, extraction.frame_step, extraction.clips_per_video,
                        extraction.spatial_views, extraction.resize or resolution, resolution)
    if sampling.resize < sampling.crop:
        raise FerCacheError(f"{config.path}: extraction resize {sampling.resize} is smaller than the encoder's "
                            f"{sampling.crop} px input; set resize to at least {sampling.crop}")
    attrs = store_attrs(dataset, scan, model, sampling, extraction.dtype, extraction.compressor)
    attrs["created_by"] = {  # the resolved request that made the store (not part of the fingerprint)
        "data_yaml": str(config.path.resolve()), "dataset_entry": {k: str(v) for k, v in
                                                                  asdict(dataset_cfg).items()},
        "encoder_entry": {k: str(v) for k, v in asdict(encoder_cfg).items()}, "extraction": asdict(extraction),
        "batch_size": batch_size, "device": str(torch_device), "limit": limit, "argv": sys.argv}
    layout = st.Layout(len(scan.videos), sampling.clips_per_video, sampling.spatial_views, model.cfg.num_tokens,
                       model.cfg.embed_dim, sampling.frames_per_clip, extraction.dtype, extraction.compressor)
    lock = st.StoreLock(out) if info.rank == 0 else nullcontext()
    with lock, StopFlag() as stop:
        group = prepare_store(out, overwrite, layout, scan, attrs, info)
        status = group["videos/status"][:]
        todo = [i for i in range(len(scan.videos)) if status[i] != st.DONE][info.rank::info.world]
        if on_start is not None:
            on_start(len(scan.videos), len(scan.videos) - int((status == st.DONE).sum()))
        jobs = [(i, scan.videos[i].path) for i in todo]
        forward = torch.compile(model) if compile_model else model
        encoded, clips = encode_all(forward, group, VideoClips(dataset_cfg.root, jobs, sampling), batch_size,
                                    workers, torch_device, stop, on_advance)
        barrier(info)
    return summarise(out, group, scan, encoded, clips, time.perf_counter() - started, stop.raised)


def summarise(out: str, group, scan: ScanResult, encoded: int, clips: int, seconds: float,
              interrupted: bool) -> ExtractSummary:
    status = group["videos/status"][:]
    errors = st.read_strings(group["videos/error"])
    ids = st.read_strings(group["videos/id"])
    failed = [(ids[i], errors[i]) for i in np.flatnonzero(status == st.FAILED)]
    return ExtractSummary(store=out, total=len(ids), done=int((status == st.DONE).sum()), failed=failed,
                          scan_errors=list(scan.errors), encoded_now=encoded, clips_now=clips, seconds=seconds,
                          interrupted=interrupted or bool((status == st.PENDING).any()))


def encode_all(model, group, dataset: VideoClips, batch_size: int, workers: int, device: torch.device,
               stop: StopFlag, on_advance) -> tuple[int, int]:
    """Decode workers feed the batch encoder; a writer thread commits finished videos. Returns (videos, clips)."""
    if not len(dataset):
        return 0, 0
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None,
                        worker_init_fn=quiet_worker if workers else None)
    out_dtype = torch.float16 if group["tokens"].attrs.get("storage_dtype") == "float16" else torch.float32
    writer = Writer(group)
    writer.start()
    encoder = BatchEncoder(model, writer, batch_size, device, out_dtype, on_advance)
    try:
        for decoded in loader:
            if stop.raised:
                break
            encoder.add(decoded)
            if stop.raised:
                break
        else:
            encoder.flush()
    finally:
        writer.close()
    return encoder.videos, encoder.clips
