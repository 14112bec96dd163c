"""Probes on cached tokens: the `Probe` protocol, attentive (V-JEPA's attentive classifier, on the fast exact
attention of fer_probe.attention), attentive-deep, and the linear and mlp baselines on mean-pooled tokens. The
names they go by: fer_probe.registry.

Axes: B clips, N tokens, D width, Q queries, C classes.
"""

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
import torch.nn as nn

from fer_probe.attention import CrossAttentionBlock, SelfAttentionBlock, attend_many
from fer_probe.errors import FerProbeError
from fer_probe.registry import PROBES, probe_class

HEAD_TYPES = ("linear", "mlp")  # as config.Head
INIT_STD = 0.02  # V-JEPA's trunc_normal std for every Linear of the pooler


class Probe(nn.Module, ABC):
    """What every probe is. It consumes tokens [B, N, D] (`consumes` "tokens") or mean-pooled tokens [B, D]
    ("pooled", standardised with training statistics by fit_standardisation); it pools them to [B, D] and
    classifies that to [B, C]; `create` builds it with its initial weights."""

    consumes: ClassVar[Literal["tokens", "pooled"]] = "tokens"
    attention: ClassVar[bool] = False  # whether attention heads and the cross-attention's proj apply to it
    shares_token_pass = False  # single cross-attention probes pool in one pass with others (forward_many)
    takes_float16: ClassVar[bool] = False  # CPU tokens stored in float16 come as they are (else widened to float32)

    @classmethod
    @abstractmethod
    def build(cls, dim: int, num_classes: int, *, num_heads: int, num_queries: int, head: str,
              use_proj: bool) -> "Probe":
        """The probe for tokens of width `dim`; settings that do not apply to it are ignored."""

    @classmethod
    def create(cls, dim: int, num_classes: int, *, device: torch.device, **settings) -> "Probe":
        """A probe with its initial weights on `device` (the global RNG is seeded by the caller)."""
        return cls.build(dim, num_classes, **settings).to(device)

    @abstractmethod
    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> one vector per clip [B, D]."""

    @abstractmethod
    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, D] -> logits [B, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(x))

    def fit_standardisation(self, features: torch.Tensor) -> None:
        """Pooled probes standardise their inputs with the training videos' statistics; others need nothing."""


class AttentivePooler(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_queries: int = 1, *, mlp_ratio: float = 4.0, depth: int = 1,
                 eps: float = 1e-5, use_proj: bool = False):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, num_heads, mlp_ratio, eps=eps) for _ in range(depth - 1))
        self.cross_attention_block = CrossAttentionBlock(dim, num_heads, mlp_ratio, eps=eps, use_proj=use_proj)
        if self.query_tokens.device.type != "meta":  # built on the meta device, the caller initialises it once placed
            reference_init(self)

    def forward(self, x: torch.Tensor, fast: bool = True) -> torch.Tensor:
        if (len(self.blocks) or not fast) and not torch.is_autocast_enabled():
            x = x.to(self.query_tokens.dtype)  # half CPU tokens: the self-attention blocks and nn.Linear in float32
        for block in self.blocks:
            x = block(x)  # [B, N, D]
        return self.cross_attention_block(self.query_tokens, x, fast).mean(dim=1)  # [1, Q, D] -> [B, D]


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
    raise FerProbeError(f"unknown head '{kind}'; use one of: {', '.join(HEAD_TYPES)}")


class AttentiveProbe(Probe):
    """tokens [B, N, D] -> logits [B, C]; `linear` is named as in V-JEPA's AttentiveClassifier."""

    attention = True
    takes_float16 = True  # its pooling widens them a chunk at a time (attention.StreamedPool)
    depth = 1  # blocks: depth - 1 self-attention blocks, then the cross-attention

    def __init__(self, dim: int, num_classes: int, *, num_heads: int = 16, num_queries: int = 1, depth: int = 1,
                 mlp_ratio: float = 4.0, head: str = "linear", use_proj: bool = False, eps: float = 1e-5):
        super().__init__()
        if dim % num_heads:
            raise FerProbeError(f"token width {dim} is not divisible by {num_heads} attention heads")
        self.pooler = AttentivePooler(dim, num_heads, num_queries, mlp_ratio=mlp_ratio, depth=depth, eps=eps,
                                      use_proj=use_proj)
        self.head_kind = head
        if head == "linear":
            self.linear = classification_head(dim, num_classes, "linear")
        else:
            self.mlp_head = classification_head(dim, num_classes, head)
        self.fast = True

    @classmethod
    def build(cls, dim: int, num_classes: int, *, num_heads: int = 16, num_queries: int = 1, head: str = "linear",
              use_proj: bool = False) -> "AttentiveProbe":
        return cls(dim, num_classes, num_heads=num_heads, num_queries=num_queries, depth=cls.depth, head=head,
                   use_proj=use_proj)

    @classmethod
    def create(cls, dim: int, num_classes: int, *, device: torch.device, **settings) -> "AttentiveProbe":
        """Built on the meta device and initialised once: PyTorch's default initialisation of 20M parameters,
        replaced right after, would cost as much again."""
        with torch.device("meta"):
            model = cls.build(dim, num_classes, **settings)
        # empty tensors assigned in place of the meta ones: to_empty would go through torch's reference
        # implementations, whose first use imports sympy (0.4 s)
        model.load_state_dict({name: torch.empty(value.shape, dtype=value.dtype, device=device)
                               for name, value in model.state_dict().items()}, assign=True)
        model.reset_parameters()
        return model

    def reset_parameters(self) -> None:
        """The reference initialisation of the pooler and PyTorch's default for the head (a probe built on the meta
        device skips the default initialisation that this replaces anyway)."""
        reference_init(self.pooler)
        for module in (self.linear if self.head_kind == "linear" else self.mlp_head).modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    @property
    def shares_token_pass(self) -> bool:
        """Single cross-attention probes on the fast path can pool in one pass with other such probes."""
        return self.fast and not len(self.pooler.blocks)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.pooler(tokens, self.fast)  # [B, D]

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled) if self.head_kind == "linear" else self.mlp_head(pooled)  # [B, C]


class DeepAttentiveProbe(AttentiveProbe):
    """V-JEPA 2's attentive probe: three self-attention blocks over the tokens before the cross-attention."""

    depth = 4


class PooledProbe(Probe):
    """Baselines on mean-pooled tokens [B, D]: standardised with training statistics, then linear or MLP."""

    consumes = "pooled"
    hidden_layer = False  # an MLP with one hidden layer of the token width, or a linear map

    @classmethod
    def build(cls, dim: int, num_classes: int, **settings) -> "PooledProbe":
        return cls(dim, num_classes, hidden=dim if cls.hidden_layer else None)

    def __init__(self, dim: int, num_classes: int, hidden: int | None = None):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        if hidden is None:
            self.net = nn.Linear(dim, num_classes)
        else:
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, num_classes))

    def fit_standardisation(self, features: torch.Tensor) -> None:
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6))

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)  # [B, C]


class LinearProbe(PooledProbe):
    pass


class MLPProbe(PooledProbe):
    hidden_layer = True


def forward_many(models: list[nn.Module], x: torch.Tensor, rows: list[list[int]] | None = None, *,
                 matmul_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Logits of several probes on the same inputs [B, ...] -> P x [B_p, C], each on its rows of the batch (all rows
    by default); attentive probes share one pass over the tokens, multiplying float16 ones on the CPU in matmul_dtype
    (device.token_matmul_dtype)."""
    shared = [i for i, m in enumerate(models) if m.shares_token_pass]
    out: list[torch.Tensor | None] = [None] * len(models)
    if shared:
        blocks = [models[i].pooler.cross_attention_block for i in shared]
        queries = [models[i].pooler.query_tokens for i in shared]
        subsets = [rows[i] for i in shared] if rows is not None else None
        attended = attend_many(blocks, queries, x, rows=subsets, matmul_dtype=matmul_dtype)  # P' x [B_p, Q, D]
        for i, block, query, y in zip(shared, blocks, queries, attended):
            out[i] = models[i].classify(block.finish(query, y).mean(dim=1))  # [B_p, C]
    widened = None  # CPU float16 tokens as float32, for the probes that do not take them (made once)
    for i, model in enumerate(models):
        if out[i] is None:
            inputs = x
            if x.dtype == torch.float16 and x.device.type == "cpu" and not getattr(model, "takes_float16", False):
                inputs = widened = x.float() if widened is None else widened
            out[i] = model(inputs if rows is None else inputs[rows[i]])
    return out


def registered(kind: str) -> type[Probe]:
    """The Probe class of a registered name; an unknown name is the user's mistake, in one line."""
    try:
        return probe_class(kind)
    except ValueError as exc:
        raise FerProbeError(str(exc)) from None


def build_probe(kind: str, dim: int, num_classes: int, *, num_heads: int = 16, num_queries: int = 1,
                head: str = "linear", use_proj: bool = False) -> Probe:
    return registered(kind).build(dim, num_classes, num_heads=num_heads, num_queries=num_queries, head=head,
                                  use_proj=use_proj)


__all__ = ["PROBES", "Probe", "AttentiveProbe", "DeepAttentiveProbe", "LinearProbe", "MLPProbe", "build_probe",
           "registered", "forward_many", "load_reference_classifier"]


def load_reference_classifier(state_dict: dict, num_heads: int = 16, use_proj: bool = False) -> AttentiveProbe:
    """A V-JEPA 1 AttentiveClassifier state dict -> an AttentiveProbe giving the same logits (fast path).
    use_proj=False reproduces upstream V-JEPA 1, use_proj=True the paper's fork; the weights cannot tell which."""
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
    probe = AttentiveProbe(dim, num_classes, num_heads=num_heads, num_queries=num_queries, depth=1,
                           mlp_ratio=hidden / dim, use_proj=use_proj)
    missing, unexpected = probe.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FerProbeError(f"classifier state dict mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return probe.eval()
