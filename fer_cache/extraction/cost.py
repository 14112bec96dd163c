"""What an extraction will cost before it runs (`fer-cache scan --encoder`): encoder passes (one per clip view and
per augmented copy) and stored bytes, for data.yaml's extraction (and its preset) over the scanned videos.

Axes: V videos, K clips per video, S views, A augmented copies, N tokens, D width.
"""

from dataclasses import dataclass

import numpy as np

from fer_cache.config import Config
from fer_cache.extraction.request import ExtractRequest
from fer_cache.store.schema import STORED_DTYPES


@dataclass(frozen=True, kw_only=True)
class ExtractionCost:
    videos: int
    clips: int  # clips of every video together (a dense store: every start of each, from its decoded frames)
    views: int
    copies: int
    view_bytes: int  # one clip view's stored tokens, N x D x the dtype's bytes

    @property
    def clean_passes(self) -> int:
        return self.clips * self.views

    @property
    def copy_passes(self) -> int:
        return self.clips * self.copies

    def lines(self) -> list[str]:
        out = [f"{self.clean_passes} encoder passes for {self.clips} clips x {self.views} views: "
               f"{size(self.clean_passes * self.view_bytes)} of tokens"]
        if self.copies:
            out.append(f"+ {self.copy_passes} encoder passes for {self.copies} augmented copies of every clip: "
                       f"{size(self.copy_passes * self.view_bytes)} more ({self.copies}x the clean clips' encoder "
                       "time and bytes at one view; a compact store, extraction rank R, divides the bytes by about "
                       "D / R)")
        return out


def size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def extraction_cost(config: Config, request: ExtractRequest, *, videos: int, frames: list[int] | None) \
        -> ExtractionCost:
    """The cost of extracting `request` (its dataset, encoder and preset) over `videos` videos of these decoded
    frame counts (None: not decoded; a dense store's clips are then unknown and refused in one line)."""
    import torch

    from fer_cache.encoders import load_encoder
    from fer_cache.errors import FerCacheError
    from fer_cache.extraction.pipeline import resolved_extraction
    from fer_cache.inputs.video import Sampling

    entry = config.encoder(request.encoder)
    extraction = resolved_extraction(config, entry, request)
    model = load_encoder(entry.with_frames(extraction.frames_per_clip), device=torch.device("cpu"))
    sampling = Sampling.from_config(extraction, model.cfg.resolution, normalisation=model.normalisation)
    if sampling.dense and frames is None:
        raise FerCacheError("every clip start depends on each video's frames: add --decode to count them")
    clips = sum(sampling.clip_count(n) for n in frames) if frames is not None else sampling.clips_per_video * videos
    width = extraction.rank or model.cfg.token_width
    itemsize = np.dtype(STORED_DTYPES[extraction.dtype]).itemsize
    return ExtractionCost(videos=videos, clips=clips,
                          views=sampling.spatial_views, copies=sampling.copies,
                          view_bytes=model.cfg.num_tokens * width * itemsize)
