"""Posteriors of every scored clip view of a video, for one or several trained probes in one read of the video.

Axes: M scored inputs of a video, C classes.
"""

import numpy as np
import torch
import torch.nn as nn

from fer_probe.config import ProbeConfig
from fer_probe.data.sampling import TokenSource
from fer_probe.probes.base import forward_many

CHUNK = 16  # probe passes per forward call when a video has many clip views


@torch.inference_mode()
def video_posteriors(source: TokenSource, models: list[nn.Module], videos: list[int], *, cfg: ProbeConfig,
                     wanted: list[list[int]] | None = None, class_mask: np.ndarray | None = None,
                     modes: list[tuple[str, str]] | None = None) -> list[dict[int, np.ndarray]]:
    """Per video, {model index: posteriors [M, C]} for the wanted models (all by default), from one read of the
    video. modes (per model, its train_clips and test_clips; cfg's for all by default) lets models trained or scored
    on different clips share the read. class_mask [C] limits the softmax to the classes marked True (cross-dataset
    `shared` policy)."""
    precision = source.reader.precision
    for model in models:
        model.eval()
    mask = torch.from_numpy(class_mask).to(precision.device) if class_mask is not None else None
    modes = modes or [(cfg.train_clips, cfg.test_clips)] * len(models)
    out = []
    for i, values in enumerate(source.test_videos(videos)):
        result = {}
        needed = wanted[i] if wanted is not None else list(range(len(models)))
        for mode in dict.fromkeys(modes[m] for m in needed):  # each mode's models share one pass
            scorers = [m for m in needed if modes[m] == mode]
            train_clips, test_clips = mode
            x = precision.to_compute(source.scored_inputs(values, train_clips == "all", test_clips))
            parts: list[list[torch.Tensor]] = [[] for _ in scorers]
            for chunk in x.split(CHUNK):
                with precision.autocast():
                    for j, logits in enumerate(forward_many([models[m] for m in scorers], chunk,
                                                            precision=precision)):
                        parts[j].append(logits.float())
            for m, chunks in zip(scorers, parts):
                logits = torch.cat(chunks)  # [M, C]
                if mask is not None:
                    logits[:, ~mask] = -torch.inf
                result[m] = logits.softmax(dim=-1).cpu().numpy()
        out.append(result)
    return out
