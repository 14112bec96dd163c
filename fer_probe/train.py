"""Training several probe heads in one pass over cached tokens, and scoring every clip of test videos.

Axes: B videos in a batch, K clips, S views, N tokens, D width, C classes, M scored clip views of a video.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fer_probe.errors import FerProbeError
from fer_probe.probes import PROBE_TYPES, build_probe
from fer_probe.reader import CacheReader, ClipRef


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that decides a probe run; written into RUN/config.json."""
    probe: str = "attentive"
    epochs: int = 20
    batch_size: int = 8
    lrs: tuple[float, ...] = (1e-3,)
    weight_decays: tuple[float, ...] = (0.01,)
    head: str = "linear"  # linear (as V-JEPA) or mlp (3 layers)
    num_heads: int = 16
    num_queries: int = 1
    # one random clip/view per video per epoch (the pooled baselines, held in memory, see every clip view), or
    # all clips of a view concatenated, as the paper trains
    train_clips: str = "one"
    test_clips: str = "all"  # all clips and views of a test video, or one (the middle clip, first view)
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    memory_budget_mb: float = 2048.0  # decoded tokens kept in memory between epochs; 0 streams every read
    # auto: float32 on the CPU (exact, deterministic), bfloat16 on CUDA; bfloat16 on a CPU with AMX is ~2x faster
    precision: str = "auto"

    def check(self) -> "ProbeConfig":
        if self.probe not in PROBE_TYPES:
            raise FerProbeError(f"--probe must be one of {', '.join(PROBE_TYPES)}, got '{self.probe}'")
        if self.train_clips not in ("one", "all") or self.test_clips not in ("one", "all"):
            raise FerProbeError("--train-clips and --test-clips take 'one' or 'all'")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise FerProbeError(f"--precision must be auto, float32 or bfloat16, got '{self.precision}'")
        if self.epochs < 1 or self.batch_size < 1:
            raise FerProbeError("--epochs and --batch-size must be at least 1")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def compute_dtype(self) -> torch.dtype:
        if self.precision == "auto":
            return torch.bfloat16 if resolve_device(self.device).type == "cuda" else torch.float32
        return torch.bfloat16 if self.precision == "bfloat16" else torch.float32


@dataclass
class Head:
    name: str  # encodes its hyperparameters, e.g. lr1e-03_wd0.01
    lr: float
    weight_decay: float
    model: nn.Module
    optimizer: torch.optim.Optimizer


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise FerProbeError("--device cuda was asked for, but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and 1-D parameters (norms), as V-JEPA."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    other = [p for n, p in model.named_parameters() if p.requires_grad and (p.ndim <= 1 or n.endswith(".bias"))]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def make_heads(cfg: ProbeConfig, dim: int, num_classes: int, seed: int, device: torch.device) -> list[Head]:
    heads = []
    for lr in cfg.lrs:
        for wd in cfg.weight_decays:
            torch.manual_seed(seed)  # every head starts from the same weights: only lr/wd differ
            model = build_probe(cfg.probe, dim, num_classes, cfg.num_heads, cfg.num_queries, cfg.head).to(device)
            optimizer = torch.optim.AdamW(parameter_groups(model, wd), lr=lr, fused=True)  # 5x faster on CPU
            heads.append(Head(f"lr{lr:.0e}_wd{wd:g}", lr, wd, model, optimizer))
    return heads


class TokenSource:
    """Training and test inputs for a probe: raw tokens for attentive probes, mean-pooled tokens for baselines."""

    def __init__(self, reader: CacheReader, kind: str, pooled: torch.Tensor | None = None):
        self.reader, self.kind = reader, kind
        self.pooled = pooled  # [V, K, S, D] float32 for the pooled probes

    def train_batches(self, videos: np.ndarray, rng: np.random.Generator, batch_size: int,
                      all_clips: bool) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """(inputs, video indices) per batch; one random clip/view per video, or every clip of one view."""
        order = rng.permutation(videos)
        clips = rng.integers(0, self.reader.clips, size=len(order))
        views = rng.integers(0, self.reader.views, size=len(order))
        chunks = [slice(i, i + batch_size) for i in range(0, len(order), batch_size)]
        if self.kind == "pooled":  # features are in memory: every clip view of every video, each epoch
            if all_clips:
                for c in chunks:
                    yield self.pooled[order[c], :, views[c]].mean(axis=1), order[c]  # [B, D]
                return
            K, S = self.reader.clips, self.reader.views
            samples = rng.permutation(len(order) * K * S)
            video, clip, view = order[samples // (K * S)], (samples // S) % K, samples % S
            for i in range(0, len(samples), batch_size):
                c = slice(i, i + batch_size)
                yield self.pooled[video[c], clip[c], view[c]], video[c]  # [B, D]
            return
        if all_clips:
            for c in chunks:
                batch = [self.reader.video(int(v))[:, s] for v, s in zip(order[c], views[c])]  # B x [K, N, D]
                yield torch.stack([b.reshape(-1, b.shape[-1]) for b in batch]), order[c]  # [B, K*N, D]
            return
        refs = [[ClipRef(int(v), int(k), int(s)) for v, k, s in zip(order[c], clips[c], views[c])] for c in chunks]
        for c, batch in zip(chunks, self.reader.batches(refs)):
            yield batch, order[c]  # [B, N, D]

    def test_inputs(self, videos: list[int], all_clips: bool, one_clip: bool) -> Iterator[torch.Tensor]:
        """Per test video, the inputs of every scored clip view: [M, N, D] (or [M, D] pooled)."""
        K, S = self.reader.clips, self.reader.views
        middle = K // 2
        if self.kind == "pooled":
            for v in videos:
                values = self.pooled[v]  # [K, S, D]
                if all_clips:
                    yield values.mean(dim=0)  # [S, D]
                elif one_clip:
                    yield values[middle, :1]  # [1, D]
                else:
                    yield values.reshape(K * S, -1)  # [K*S, D]
            return
        for values in self.reader.videos(videos):  # [K, S, N, D]
            if all_clips:
                yield values.transpose(0, 1).reshape(S, K * values.shape[2], -1)  # [S, K*N, D]
            elif one_clip:
                yield values[middle, :1]  # [1, N, D]
            else:
                yield values.reshape(K * S, *values.shape[2:])  # [K*S, N, D]


def autocast_for(device: torch.device, dtype: torch.dtype):
    """bfloat16 autocast on CUDA; on the CPU the tokens arrive in bfloat16 and the probe casts only what reads them
    (autocast there would re-cast every weight on every step)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and dtype == torch.bfloat16)


def train_heads(source: TokenSource, videos: np.ndarray, targets: np.ndarray, cfg: ProbeConfig, num_classes: int,
                seed: int, on_epoch: Callable[[int], None] | None = None) -> list[Head]:
    """Train every (lr, wd) head on `videos`, each batch read once for all heads. targets: [V_store] class ids."""
    device, dtype = resolve_device(cfg.device), cfg.compute_dtype()
    heads = make_heads(cfg, source.reader.width, num_classes, seed, device)
    if source.kind == "pooled":
        feats = source.pooled[videos].reshape(-1, source.reader.width)
        for head in heads:
            head.model.fit_standardisation(feats.to(device))
    samples = len(videos) * (source.reader.clips * source.reader.views
                             if source.kind == "pooled" and cfg.train_clips == "one" else 1)
    steps_per_epoch = math.ceil(samples / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    step = 0
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([seed, epoch])
        for inputs, batch_videos in source.train_batches(videos, rng, cfg.batch_size, cfg.train_clips == "all"):
            x = inputs.to(device, non_blocking=True)
            y = torch.from_numpy(targets[batch_videos]).to(device)
            scale = 0.5 * (1 + math.cos(math.pi * step / total_steps))  # cosine from lr to 0
            for head in heads:
                for group in head.optimizer.param_groups:
                    group["lr"] = head.lr * scale
                head.model.train()
                with autocast_for(device, dtype):
                    loss = F.cross_entropy(head.model(x).float(), y)
                head.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(head.model.parameters(), cfg.grad_clip, foreach=True)
                head.optimizer.step()
            step += 1
        if on_epoch is not None:
            on_epoch(epoch)
    return heads


@torch.inference_mode()
def score_videos(source: TokenSource, heads: list[Head], videos: list[int], cfg: ProbeConfig,
                 class_mask: np.ndarray | None = None) -> list[list[np.ndarray]]:
    """Posteriors of every scored clip view: per head, per video, [M, C]. class_mask restricts the softmax."""
    device, dtype = resolve_device(cfg.device), cfg.compute_dtype()
    out: list[list[np.ndarray]] = [[] for _ in heads]
    for inputs in source.test_inputs(videos, cfg.train_clips == "all", cfg.test_clips == "one"):
        x = inputs.to(device)
        for h, head in enumerate(heads):
            head.model.eval()
            with autocast_for(device, dtype):
                logits = torch.cat([head.model(part) for part in x.split(16)]).float()  # [M, C]
            if class_mask is not None:
                logits[:, ~torch.from_numpy(class_mask).to(device)] = -torch.inf
            out[h].append(logits.softmax(dim=-1).cpu().numpy())
    return out
