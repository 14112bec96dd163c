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

from fer_cache.store import schema
from fer_cache.store import writing as st
from fer_cache.extraction.batching import Advance, BatchEncoder, DecodedVideo
from fer_cache.extraction.compiling import compile_for
from fer_cache.config import Config, check_extraction
from fer_cache.inputs.datasets import ScanResult, scan_dataset
from fer_cache.extraction.distributed import DistInfo, barrier, init_distributed, resolve_device
from fer_cache.encoders import describe_encoder, load_encoder
from fer_cache.errors import DecodeError, FerCacheError
from fer_cache.inputs.video import Sampling, cut_clips, decode_video
from fer_cache.extraction.writer import Writer

INTERRUPTED = 130  # exit status after a clean stop on Ctrl-C or SIGTERM (128 + SIGINT)


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
    pending: int = 0  # videos of this dataset still to encode
    stopped: bool = False  # a signal asked for a clean stop
    notes: list[str] = field(default_factory=list)  # what the run decided on its own: growth, repairs, fallbacks

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return INTERRUPTED
        return 3 if (self.failed or self.scan_errors or self.pending) else 0


@dataclass(frozen=True)
class ExtractRequest:
    """What to extract, where and how; the CLI builds one from its options."""
    dataset: str
    encoder: str
    out: str
    device: str = "auto"
    batch_size: int = 8
    workers: int = 2
    limit: int | None = None
    overwrite: bool = False
    compile: str = "auto"  # auto: compiled on CUDA, eager on the CPU; on; off


WORKER_TIMEOUT = 600  # seconds a decode worker may take for one video before the run ends with an error


class VideoClips(Dataset):
    """One item per video: decoded once, all clips and views cut from the same frames (runs in workers)."""

    def __init__(self, root: Path, jobs: list[tuple[int, str]], sampling: Sampling):
        self.root, self.jobs, self.sampling = root, jobs, sampling
        self.detector = None  # the face detector, made in each worker on first use (it cannot be pickled)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> DecodedVideo:
        index, rel = self.jobs[i]
        if self.sampling.face_crop and self.detector is None:
            from fer_cache.inputs.faces import load_detector
            self.detector = load_detector()
        try:
            frames = decode_video(self.root / rel, *self.sampling.decode_side)  # [F, H, W, 3]
            clips, frame_index = cut_clips(frames, self.sampling, self.detector)
        except DecodeError as exc:
            return DecodedVideo.failure(index, str(exc))
        clips = torch.from_numpy(np.ascontiguousarray(clips))
        if torch.utils.data.get_worker_info() is not None:
            # Moved to shared memory here, not in the queue's feeder thread: a full /dev/shm or a file-size limit then
            # fails this call, which the DataLoader reports to the parent, instead of a lost item and a parent that
            # waits for it forever.
            clips.share_memory_()
        return DecodedVideo(index, clips, frame_index, len(frames))


def quiet_worker(_: int) -> None:
    """Ctrl-C reaches the whole process group: decode workers leave it to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def prepare_store(request: ExtractRequest, layout: st.Layout, scan: ScanResult, *, attrs: dict,
                  info: DistInfo) -> tuple:
    """Rank 0 creates the store, or reconciles an existing one with the dataset (growing it); the others open it
    once it is ready. Returns (group, Reconciled)."""
    out = request.out
    exists = (Path(out) / "zarr.json").exists() if not schema.is_url(out) else _url_exists(out)
    reconciled = st.Reconciled(list(range(len(scan.videos))))
    if info.rank == 0:
        if exists and not request.overwrite:
            group = open_for_writing(out)
            reconciled = st.reconcile(group, out, attrs, videos=scan.videos)
        else:
            if not schema.is_url(out) and Path(out).exists() and not st.is_replaceable(Path(out)):
                raise FerCacheError(f"{out} exists and is not a fer-cache store; choose another output (nothing was "
                                    "changed there)")
            try:
                group = st.create_store(out, layout, scan.videos, attrs=attrs)
            except OSError as exc:
                raise FerCacheError(f"cannot write the store at {out}: {exc.strerror or exc}; choose a writable "
                                    "output") from exc
    barrier(info)
    if info.rank != 0:
        group = open_for_writing(out)
        position = {video_id: row for row, video_id in enumerate(schema.read_strings(group["videos/id"]))}
        reconciled = st.Reconciled([position[v.id] for v in scan.videos])
    return group, reconciled


def open_for_writing(out: str):
    try:
        return schema.open_store(out, mode="r+")
    except schema.StoreFormatError as exc:
        raise FerCacheError(str(exc)) from exc


def _url_exists(url: str) -> bool:
    import fsspec
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(f"{path.rstrip('/')}/zarr.json")


def store_attrs(dataset: str, scan: ScanResult, encoder, *, sampling: Sampling, dtype: str, compressor: str) -> dict:
    encoder_attrs = describe_encoder(encoder)
    storage = {"dtype": dtype, "compressor": compressor}
    token_grid = list(encoder.cfg.token_grid)
    return {"dataset": dataset, "label_names": list(scan.label_names), "encoder": encoder_attrs,
            "sampling": sampling.as_attrs(), "token_grid": token_grid, "storage": storage,
            "fingerprint": schema.fingerprint(encoder_attrs, sampling.as_attrs(), storage, token_grid=token_grid),
            "software": st.software_versions()}


def run_extraction(config: Config, request: ExtractRequest, *, on_start: Callable[[int, int], None] | None = None,
                   on_advance: Callable[[Advance], None] | None = None) -> ExtractSummary:
    """Encode every pending video of the dataset into the store; resumable, safe to interrupt, multi-rank aware."""
    started = time.perf_counter()
    dataset_cfg, encoder_cfg = config.dataset(request.dataset), config.encoder(request.encoder)
    extraction = check_extraction(config.extraction_for(encoder_cfg), f"{config.path} (extraction)")
    scan = scan_dataset(dataset_cfg)
    if not scan.videos:
        raise FerCacheError(f"dataset '{request.dataset}': no videos to extract under {dataset_cfg.root} "
                            f"({len(scan.errors)} files could not be used, {scan.skipped} left out by filters); "
                            "run fer-cache scan to see why")
    if request.limit is not None:
        scan.videos = scan.videos[:request.limit]
    info = init_distributed(request.device)
    device = resolve_device(request.device, info.local_rank)
    model = load_encoder(encoder_cfg.with_frames(extraction.frames_per_clip), device=device)
    sampling = Sampling.from_config(extraction, model.cfg.resolution)
    if sampling.face_crop:
        from fer_cache.inputs.faces import load_detector
        load_detector()  # a missing OpenCV is a one-line error now, not a failure per video
    if sampling.resize < sampling.crop and not sampling.face_crop:
        raise FerCacheError(f"{config.path}: extraction resize {sampling.resize} is smaller than the encoder's "
                            f"{sampling.crop} px input; set resize to at least {sampling.crop}")
    attrs = store_attrs(request.dataset, scan, model, sampling=sampling, dtype=extraction.dtype,
                        compressor=extraction.compressor)
    attrs["created_by"] = {  # the resolved request that made the store (not part of the fingerprint)
        "data_yaml": str(config.path.resolve()), "dataset_entry": {k: str(v) for k, v in asdict(dataset_cfg).items()},
        "encoder_entry": {k: str(v) for k, v in asdict(encoder_cfg).items()}, "extraction": asdict(extraction),
        "batch_size": request.batch_size, "device": str(device), "limit": request.limit, "argv": sys.argv}
    layout = st.Layout(len(scan.videos), sampling.clips_per_video, sampling.spatial_views, model.cfg.num_tokens,
                       model.cfg.token_width, sampling.frames_per_clip, extraction.dtype, extraction.compressor)
    st.tune_for_writing()
    lock = st.StoreLock(request.out) if info.rank == 0 else nullcontext()
    with lock, StopFlag() as stop:
        group, reconciled = prepare_store(request, layout, scan, attrs=attrs, info=info)
        status = group["videos/status"][:]
        rows = reconciled.rows
        todo = [(row, v.path) for row, v in zip(rows, scan.videos) if status[row] != schema.DONE]
        if on_start is not None:
            on_start(len(rows), len(todo))
        forward, compile_note = compile_for(model, device, request.compile)
        encoded, clips = encode_all(forward, group, VideoClips(dataset_cfg.root, todo[info.rank::info.world],
                                                               sampling), request=request, device=device, stop=stop,
                                   on_advance=on_advance)
        barrier(info)
    summary = summarise(request.out, group, rows, scan=scan, encoded=encoded, clips=clips,
                        seconds=time.perf_counter() - started, stopped=stop.raised)
    summary.notes += [n for n in (forward.fallback or compile_note, *reconciliation_notes(reconciled)) if n]
    summary.notes += frames_notes(config, encoder_cfg)
    labels = {v.label_name for v in scan.videos}
    if len(labels) < 2:
        summary.notes.append(f"every video carries the label {', '.join(labels)}: fer-probe cv refuses a store of one "
                             "class (a classifier needs at least 2)")
    return summary


def frames_notes(config: Config, encoder_cfg) -> list[str]:
    """An encoder entry's frames_per_clip wins over the extraction's: say so, or a reader thinks the other was used."""
    entry, extraction = encoder_cfg.frames_per_clip, config.extraction.frames_per_clip
    if entry is None or entry == extraction:
        return []
    return [f"frames_per_clip {entry} of encoder '{encoder_cfg.name}' ({config.path} line {encoder_cfg.line}) replaces "
            f"the extraction's {extraction}: clips of {entry} frames"]


def reconciliation_notes(reconciled: st.Reconciled) -> list[str]:
    notes = []
    if reconciled.added:
        notes.append(f"the dataset grew: {reconciled.added} new videos appended to the store (encoded ones kept)")
    if reconciled.relabelled:
        notes.append(f"labels, subjects or paths of {reconciled.relabelled} videos updated to the dataset's")
    if reconciled.repaired:
        notes.append(f"{reconciled.repaired} videos marked done had lost their token chunks: encoded again")
    return notes


def summarise(out: str, group, rows: list[int], *, scan: ScanResult, encoded: int, clips: int, seconds: float,
              stopped: bool) -> ExtractSummary:
    """The outcome for the videos this run was asked for (a store may hold more)."""
    status = group["videos/status"][:]
    errors = schema.read_strings(group["videos/error"])
    ids = schema.read_strings(group["videos/id"])
    failed = [(ids[r], errors[r]) for r in rows if status[r] == schema.FAILED]
    padding = schema.padding_note(*schema.padded_videos(group, rows))
    return ExtractSummary(store=out, total=len(rows), done=int(sum(status[r] == schema.DONE for r in rows)),
                          failed=failed, scan_errors=list(scan.errors), encoded_now=encoded, clips_now=clips,
                          seconds=seconds, pending=int(sum(status[r] == schema.PENDING for r in rows)),
                          stopped=stopped, notes=[padding] if padding else [])


def encode_all(model, group, dataset: VideoClips, *, request: ExtractRequest, device: torch.device, stop: StopFlag,
               on_advance) -> tuple[int, int]:
    """Decode workers feed the batch encoder; a writer thread commits finished videos. Returns (videos, clips)."""
    if not len(dataset):
        return 0, 0
    workers = request.workers
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None,
                        worker_init_fn=quiet_worker if workers else None, timeout=WORKER_TIMEOUT if workers else 0)
    out_dtype = torch.float16 if schema.storage_dtype(group) == "float16" else torch.float32
    writer = Writer(group, location=request.out)
    writer.start()
    encoder = BatchEncoder(model, writer, batch_size=request.batch_size, device=device, out_dtype=out_dtype,
                           on_advance=on_advance)
    try:
        try:
            for decoded in loader:
                if stop.raised:
                    break
                encoder.add(decoded)
                if stop.raised:
                    break
            else:
                encoder.flush()
        except RuntimeError as exc:  # a decode worker that died, timed out or could not hand over its frames
            if not workers or "DataLoader" not in str(exc):
                raise
            encoder.drain()  # what was encoded before stays written
            raise FerCacheError(f"a decode worker could not hand over a video's frames ({worker_reason(exc)}); the "
                                "videos written so far are kept: free space in /dev/shm or raise the file-size limit "
                                "(ulimit -f), or rerun with --workers 0") from exc
        encoder.drain()
    finally:
        writer.close()
    return encoder.videos, encoder.clips


def worker_reason(exc: RuntimeError) -> str:
    """The last line of a worker's traceback that says what went wrong, e.g. `unable to resize file ...`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else "no reason given")[:200]
