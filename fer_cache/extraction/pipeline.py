"""Stage 1: decode workers -> batched frozen encoder -> a writer thread that commits whole videos. run_extraction
orchestrates; the store package prepares and writes the store, `decoding` cuts the clips, `batching` encodes them.

Axes: K clips per video, S views, T frames, h/w crop pixels, B clips in a batch, N tokens, D width.
"""

import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fer_cache.config import Config, check_extraction
from fer_cache.encoders import FAMILIES, describe_encoder, load_encoder
from fer_cache.errors import FerCacheError
from fer_cache.extraction.batching import Advance, BatchEncoder
from fer_cache.extraction.compacting import BasisPlan, BasisSampler
from fer_cache.extraction.compiling import compile_for
from fer_cache.extraction.decoding import (
    WORKER_TIMEOUT,
    VideoClips,
    longest_clip_count,
    quiet_worker,
    worker_reason,
)
from fer_cache.extraction.distributed import barrier, init_distributed, resolve_device, summed
from fer_cache.extraction.request import ExtractRequest
from fer_cache.extraction.summary import ExtractSummary, run_notes, summarise
from fer_cache.extraction.writer import Writer
from fer_cache.inputs.datasets import scan_dataset
from fer_cache.inputs.video import Sampling
from fer_cache.protocol import preset_extraction, test_extraction
from fer_cache.store import Store, schema, writing
from fer_cache.store.basis import Basis

OUT_DTYPES = {"float16": torch.float16}  # what the encoder hands back per storage dtype; others go as float32


def run_extraction(config: Config, request: ExtractRequest, *, on_start: Callable[[int, int], None] | None = None,
                   on_advance: Callable[[Advance], None] | None = None) -> ExtractSummary:
    """Encode every pending video of the dataset into the store; resumable, safe to interrupt, multi-rank aware."""
    started, dataset_cfg, encoder_cfg = time.perf_counter(), config.dataset(request.dataset), \
        config.encoder(request.encoder)
    extraction, scan = resolved_extraction(config, encoder_cfg, request), scan_dataset(dataset_cfg)
    if not scan.videos:
        raise FerCacheError(f"dataset '{request.dataset}': no videos to extract under {dataset_cfg.root} "
                            f"({len(scan.errors)} files could not be used, {scan.skipped} left out by filters); "
                            "run fer-cache scan to see why")
    videos = scan.videos[:request.limit] if request.limit is not None else scan.videos
    info = init_distributed(request.device)
    device = resolve_device(request.device, info.local_rank)
    model = load_encoder(encoder_cfg.with_frames(extraction.frames_per_clip), device=device)
    sampling = Sampling.from_config(extraction, model.cfg.resolution, normalisation=model.normalisation,
                                    where=f"{config.path}")
    if sampling.face_crop:
        from fer_cache.inputs.faces import load_detector
        load_detector()  # a missing OpenCV is a one-line error now, not a failure per video
    forward, compile_note = compile_for(model, device, request.compile)
    lock = writing.StoreLock(request.out) if info.rank == 0 else nullcontext()
    with lock, StopFlag() as stop:
        basis = fitted_basis(forward, model, videos, root=dataset_cfg.root, sampling=sampling, request=request,
                             plan=basis_plan(extraction, request), first_rank=info.rank == 0, device=device, stop=stop)
        attrs = store_attributes(config, request, model=model, sampling=sampling, extraction=extraction,
                                 basis=basis, label_names=scan.label_names, device=device)
        clips = clip_slots(sampling, dataset_cfg.root, videos, request=request, first_rank=info.rank == 0)
        layout = schema.Layout(videos=len(videos), clips=clips, views=sampling.spatial_views, copies=sampling.copies,
                               tokens=model.cfg.num_tokens, width=basis.rank if basis else model.cfg.token_width,
                               frames_per_clip=sampling.frames_per_clip, dtype=extraction.dtype,
                               compressor=extraction.compressor)
        store, reconciled = writing.prepare_for_extraction(request.out, layout, videos, attrs=attrs,
                                                      overwrite=request.overwrite, rank=info.rank,
                                                      wait=lambda: barrier(info), basis=basis)
        status = store.group["videos/status"][:]
        todo = [(row, v.path) for row, v in zip(reconciled.rows, videos) if status[row] != schema.DONE]
        if on_start is not None:
            on_start(len(reconciled.rows), len(todo))
        clips = VideoClips(dataset_cfg.root, todo[info.rank::info.world], sampling,
                           clip_slots=store.tokens.shape[1] if sampling.dense else None)
        encoded, clip_count = encode_all(forward, store, clips, request=request, device=device, stop=stop,
                                         out_dtype=OUT_DTYPES.get(extraction.dtype, torch.float32),
                                         on_advance=on_advance)
        barrier(info)
        encoded, clip_count = summed(info, encoded, clip_count)  # one summary for the whole run, from rank 0
    summary = summarise(store, reconciled.rows, scan=scan, encoded=encoded, clips=clip_count,
                        seconds=time.perf_counter() - started, stopped=stop.raised)
    summary.rank = info.rank
    if info.world > 1:
        summary.notes.append(f"{info.world} ranks encoded these videos together; rank 0 prints this summary")
    summary.notes += [n for n in (forward.fallback or compile_note,) if n]
    summary.notes += run_notes(config, encoder_cfg, scan=scan, reconciled=reconciled)
    summary.notes += list(model.identity.notes)  # heads the weights could not say, an online encoder chosen
    if model.identity.fine_tuned:
        summary.notes.append(f"the encoder was {model.identity.fine_tuned}; the store and every report say so")
    if basis is not None:
        summary.notes.append(f"compact store: rank {basis.rank} keeps {basis.explained:.1%} of the variance of "
                             f"{basis.fitted_on.get('tokens')} tokens of {basis.fitted_on.get('videos')} sampled "
                             "videos")
    return summary


def resolved_extraction(config: Config, encoder_cfg, request: ExtractRequest):
    """data.yaml's extraction for this encoder, under the request's preset, as training or as test sampling."""
    extraction = config.extraction_for(encoder_cfg)
    if request.preset is not None:
        extraction = replace(extraction, preset=request.preset,
                             **preset_extraction(request.preset, {}, where=f"--preset {request.preset}"))
    if request.test:
        extraction = test_extraction(extraction)
    return check_extraction(extraction, f"{config.path} (extraction)")


def store_attributes(config: Config, request: ExtractRequest, *, model, sampling: Sampling, extraction, basis,
                     label_names: list[str], device: torch.device) -> dict:
    """The store's attributes (its fingerprint among them; a compact store's names its basis) and the resolved
    request (not in the fingerprint)."""
    storage = {"dtype": extraction.dtype, "compressor": extraction.compressor}
    if basis is not None:
        storage["basis"] = basis.describe()
    attrs = schema.store_attrs(dataset=request.dataset, label_names=label_names, encoder=describe_encoder(model),
                               sampling=sampling.as_attrs(), storage=storage, token_grid=list(model.cfg.token_grid))
    dataset_cfg, encoder_cfg = config.dataset(request.dataset), config.encoder(request.encoder)
    objective = FAMILIES[model.identity.family].objective  # outside the fingerprint: ablate groups stores by it
    return attrs | {"objective": objective, "software": software_versions(), "created_by": {
        "data_yaml": str(config.path.resolve()), "dataset_entry": {k: str(v) for k, v in asdict(dataset_cfg).items()},
        "encoder_entry": {k: str(v) for k, v in asdict(encoder_cfg).items()}, "extraction": asdict(extraction),
        "batch_size": request.batch_size, "device": str(device), "limit": request.limit, "argv": sys.argv,
        "encoder_notes": list(model.identity.notes)}}


def clip_slots(sampling: Sampling, root, videos: list, *, request: ExtractRequest, first_rank: bool) -> int:
    """The clip axis of the store: clips_per_video, or on a new dense store its longest video's clip count."""
    if not sampling.dense:
        return sampling.clips_per_video
    exists = (Path(request.out) / "zarr.json").exists() if not schema.is_url(request.out) else \
        writing.url_exists(request.out)
    if not first_rank or exists and not request.overwrite:
        return 1  # not used: the store exists, or rank 0 creates it
    return longest_clip_count(root, [v.path for v in videos], sampling, workers=request.workers)


def basis_plan(extraction, request: ExtractRequest) -> BasisPlan | None:
    rank = request.rank or extraction.rank
    if not rank:
        return None
    return BasisPlan(rank=rank, videos=extraction.basis_videos, tokens=extraction.basis_tokens,
                     seed=extraction.basis_seed, dataset=request.dataset)


def fitted_basis(forward, model, videos: list, *, root, sampling: Sampling, request: ExtractRequest,
                 plan: BasisPlan | None, first_rank: bool, device: torch.device, stop: "StopFlag") -> Basis | None:
    """The basis of a compact extraction: the resumed store's, or fitted on a seeded sample of videos encoded now
    (by the first rank only; the others read it from the store that rank creates)."""
    if plan is None or not first_rank:
        return None
    width = model.cfg.token_width
    if not 0 < plan.rank < width:
        raise FerCacheError(f"extraction rank {plan.rank}: choose a rank between 1 and the token width {width} "
                            "(exclusive)")
    reused = plan.reusable(request.out, request.overwrite)
    if reused is not None:
        return reused
    sample = plan.sample(len(videos))
    sampler = BasisSampler(width, plan, len(sample))
    clips = VideoClips(root, [(i, videos[i].path) for i in sample], sampling)
    encode_all(forward, None, clips, request=request, device=device, stop=stop, out_dtype=torch.float32,
               on_advance=None, writer=sampler)
    if stop.raised:
        raise FerCacheError("stopped while encoding the basis sample; nothing was written (rerun to start again)")
    return sampler.basis()


def software_versions() -> dict:
    import av
    import numpy as np
    import zarr

    from fer_cache import __version__
    return {"fer_cache": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "zarr": zarr.__version__, "av": av.__version__, "numpy": np.__version__}


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


def encode_all(model, store: Store | None, dataset: VideoClips, *, request: ExtractRequest, device: torch.device,
               out_dtype: torch.dtype, stop: StopFlag, on_advance, writer: Writer | BasisSampler | None = None) \
        -> tuple[int, int]:
    """Decode workers feed the batch encoder; a writer thread commits finished videos (or `writer`, e.g. the basis
    sampler, takes them). Returns (videos, clips)."""
    if not len(dataset):
        return 0, 0
    workers = request.workers
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None,
                        worker_init_fn=quiet_worker if workers else None, timeout=WORKER_TIMEOUT if workers else 0)
    writer = writer or Writer(store)
    writer.start()
    encoder = BatchEncoder(model, writer, batch_size=request.batch_size, device=device, out_dtype=out_dtype,
                           prepare=dataset.sampling.normalise, on_advance=on_advance)
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
