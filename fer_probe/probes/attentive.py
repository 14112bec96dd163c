"""The attentive probes on cached tokens: attentive (V-JEPA's attentive classifier, on the fast exact attention of
fer_probe.probes.attention) and attentive-deep (V-JEPA 2's, self-attention blocks first); and the loader of the
reference classifiers.

Axes: B clips, N tokens, D width, Q queries, C classes.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn as nn

from fer_probe.config import Head
from fer_probe.data.precision import Precision
from fer_probe.errors import FerProbeError
from fer_probe.probes.attention import CrossAttentionBlock, SelfAttentionBlock, attend_many
from fer_probe.probes.base import Probe

INIT_STD = 0.02  # V-JEPA's trunc_normal std for every Linear of the pooler


class AttentivePooler(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_queries: int = 1, *, mlp_ratio: float = 4.0, depth: int = 1,
                 eps: float = 1e-5, use_proj: bool = False):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, num_heads, mlp_ratio, eps=eps) for _ in range(depth - 1))
        self.cross_attention_block = CrossAttentionBlock(dim, num_heads, mlp_ratio, eps=eps, use_proj=use_proj)
        if self.query_tokens.device.type != "meta":  # built on the meta device, the caller initialises it once placed
            reference_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.blocks) and not torch.is_autocast_enabled():
            x = x.to(self.query_tokens.dtype)  # half CPU tokens: the self-attention blocks and nn.Linear in float32
        for block in self.blocks:
            x = block(x)  # [B, N, D]
        return self.cross_attention_block(self.query_tokens, x).mean(dim=1)  # [1, Q, D] -> [B, D]


def reference_init(pooler: AttentivePooler) -> None:
    """V-JEPA's AttentivePooler initialisation: trunc_normal(0.02) weights and zero biases for every Linear,
    LayerNorms 1/0, the query tokens trunc_normal(0.02); then the residual branches rescaled: the cross-attention
    block's `xattn.proj` and `mlp.fc2` by 1/sqrt(2), the i-th self-attention block's (i from 1) by 1/sqrt(2(i+1))."""
    nn.init.trunc_normal_(pooler.query_tokens, std=INIT_STD)
    for module in pooler.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=INIT_STD)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    with torch.no_grad():
        cross = pooler.cross_attention_block
        cross.xattn.proj.weight.div_(math.sqrt(2.0))
        cross.mlp.fc2.weight.div_(math.sqrt(2.0))
        for i, block in enumerate(pooler.blocks, start=1):
            block.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))


def classification_head(dim: int, num_classes: int, kind: str) -> nn.Module:
    """The head after pooling; its Linears keep PyTorch's default initialisation, as V-JEPA's `linear`."""
    if kind == "linear":
        return nn.Linear(dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(),
                             nn.Linear(dim, num_classes))
    raise FerProbeError(f"unknown head '{kind}'; use one of: {', '.join(get_args(Head))}")


@dataclass(frozen=True)
class AttentiveSettings:
    """What builds an attentive probe besides its width and classes; the defaults are V-JEPA's classifier's."""
    num_heads: int = 16  # attention heads (cv resolves them from the store's encoder: config.resolve_num_heads)
    num_queries: int = 1
    head: Head = "linear"  # linear (as V-JEPA) or mlp (3 layers)
    use_proj: bool = False  # apply the cross-attention's output projection (the paper's fork) or not (V-JEPA 1)

    def __post_init__(self):
        if not isinstance(self.use_proj, bool):
            raise FerProbeError(f"use_proj must be True or False, got {self.use_proj!r}")
        if self.head not in get_args(Head):
            raise FerProbeError(f"unknown head '{self.head}'; use one of: {', '.join(get_args(Head))}")


class AttentiveProbe(Probe):
    """tokens [B, N, D] -> logits [B, C]; `linear` is named as in V-JEPA's AttentiveClassifier."""

    Settings = AttentiveSettings
    takes_float16 = True  # its pooling widens them a chunk at a time (pooling.StreamedPool)
    depth = 1  # blocks: depth - 1 self-attention blocks, then the cross-attention

    def __init__(self, dim: int, num_classes: int, settings: AttentiveSettings = AttentiveSettings(), *,
                 depth: int = 1, mlp_ratio: float = 4.0, eps: float = 1e-5):
        super().__init__()
        if dim % settings.num_heads:
            raise FerProbeError(f"token width {dim} is not divisible by {settings.num_heads} attention heads")
        self._settings = settings
        self.pooler = AttentivePooler(dim, settings.num_heads, settings.num_queries, mlp_ratio=mlp_ratio, depth=depth,
                                      eps=eps, use_proj=settings.use_proj)
        if settings.head == "linear":
            self.linear = classification_head(dim, num_classes, "linear")
        else:
            self.mlp_head = classification_head(dim, num_classes, settings.head)

    @classmethod
    def build(cls, dim: int, num_classes: int, settings: AttentiveSettings) -> "AttentiveProbe":
        return cls(dim, num_classes, settings, depth=cls.depth)

    @classmethod
    def create(cls, dim: int, num_classes: int, settings: AttentiveSettings, *,
               device: torch.device) -> "AttentiveProbe":
        """Built on the meta device and initialised once: PyTorch's default initialisation of 20M parameters,
        replaced right after, would cost as much again."""
        with torch.device("meta"):
            model = cls.build(dim, num_classes, settings)
        # empty tensors assigned in place of the meta ones: to_empty would go through torch's reference
        # implementations, whose first use imports sympy (0.4 s)
        model.load_state_dict({name: torch.empty(value.shape, dtype=value.dtype, device=device)
                               for name, value in model.state_dict().items()}, assign=True)
        model.reset_parameters()
        return model

    @property
    def settings(self) -> AttentiveSettings:
        return self._settings

    def reset_parameters(self) -> None:
        """The reference initialisation of the pooler and PyTorch's default for the head (a probe built on the meta
        device skips the default initialisation that this replaces anyway)."""
        reference_init(self.pooler)
        for module in self.head_module().modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    def head_module(self) -> nn.Module:
        return self.linear if self._settings.head == "linear" else self.mlp_head

    def shared_pass(self) -> type[Probe] | None:
        """Single cross-attention probes pool in one pass with other such probes (AttentiveProbe.forward_shared)."""
        return None if len(self.pooler.blocks) else AttentiveProbe

    @classmethod
    def forward_shared(cls, probes: list["AttentiveProbe"], x: torch.Tensor, rows: list[list[int]] | None, *,
                       precision: Precision) -> list[torch.Tensor]:
        """Every probe's score columns stacked into one traversal of the tokens (attention.attend_many)."""
        blocks = [p.pooler.cross_attention_block for p in probes]
        queries = [p.pooler.query_tokens for p in probes]
        attended = attend_many(blocks, queries, x, rows=rows, matmul_dtype=precision.matmul,
                               basis=precision.basis)  # P x [B_p, Q, D]
        return [p.classify(block.finish(query, y).mean(dim=1))  # [B_p, C]
                for p, block, query, y in zip(probes, blocks, queries, attended)]

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.pooler(tokens)  # [B, D]

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head_module()(pooled)  # [B, C]


class DeepAttentiveProbe(AttentiveProbe):
    """V-JEPA 2's attentive probe: three self-attention blocks over the tokens before the cross-attention."""

    depth = 4


def load_reference_classifier(state_dict: dict, num_heads: int = 16, use_proj: bool = False) -> AttentiveProbe:
    """A V-JEPA 1 AttentiveClassifier state dict -> an AttentiveProbe giving the same logits (fast path).
    use_proj=False reproduces upstream V-JEPA 1, use_proj=True the paper's fork; the weights cannot tell which."""
    if not isinstance(state_dict, Mapping):
        raise FerProbeError(f"load_reference_classifier takes a state dict (e.g. safetensors.torch.load_file(path)), "
                            f"got {type(state_dict).__name__}")
    if not isinstance(use_proj, bool):
        raise FerProbeError(f"load_reference_classifier: use_proj must be True (the paper's fork) or False (upstream "
                            f"V-JEPA 1), got {use_proj!r}")
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise FerProbeError(f"load_reference_classifier: num_heads must be a positive whole number, got {num_heads!r}")
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    try:
        _, num_queries, dim = state["pooler.query_tokens"].shape
        num_classes = state["linear.weight"].shape[0]
        hidden = state["pooler.cross_attention_block.mlp.fc1.weight"].shape[0]
    except KeyError as exc:
        raise FerProbeError(f"not a V-JEPA AttentiveClassifier state dict: missing {exc}") from exc
    depth = 1 + len({k.split(".")[2] for k in state if k.startswith("pooler.blocks.")})
    if depth > 1:
        raise FerProbeError("reference classifiers with self-attention blocks before the cross-attention "
                            "(depth > 1) are not supported")
    settings = AttentiveSettings(num_heads=num_heads, num_queries=num_queries, use_proj=use_proj)
    probe = AttentiveProbe(dim, num_classes, settings, mlp_ratio=hidden / dim)
    missing, unexpected = probe.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FerProbeError(f"classifier state dict mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return probe.eval()
