"""Probes on cached tokens: attentive (fast exact cross-attention), attentive-deep, linear and mlp baselines.

Axes: B clips, N tokens, D width, Q queries, h heads, d = D / h head width, C classes.
The fast path re-associates single/few-query attention so that no token is ever projected to a key or value:
scores = x_hat . (g * W_k^T q) / sqrt(d), pooled = softmax . x_hat, value = W_v (g * pooled + b) + b_v.
Cost O(N*D*h*Q) instead of O(N*D*2D); exact, including gradients.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from fer_probe.errors import FerProbeError

PROBE_TYPES = ("attentive", "attentive-deep", "linear", "mlp")


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CrossAttention(nn.Module):
    """Parameter names as in V-JEPA's CrossAttention; the reference never applies `proj` (use_proj=False)."""

    def __init__(self, dim: int, num_heads: int, use_proj: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.use_proj = use_proj

    def forward(self, query: torch.Tensor, x_normed: torch.Tensor) -> torch.Tensor:
        """The straightforward computation: query [B, Q, D], normalised tokens [B, N, D] -> [B, Q, D]."""
        B, Q, D = query.shape
        N, h = x_normed.shape[1], self.num_heads
        q = self.q(query).view(B, Q, h, D // h).transpose(1, 2)  # [B, h, Q, d]
        kv = self.kv(x_normed).view(B, N, 2, h, D // h).permute(2, 0, 3, 1, 4)  # [2, B, h, N, d]
        y = F.scaled_dot_product_attention(q, kv[0], kv[1])  # [B, h, Q, d]
        y = y.transpose(1, 2).reshape(B, Q, D)  # [B, Q, D]
        return self.proj(y) if self.use_proj else y


class CrossAttentionBlock(nn.Module):
    """norm1 on the tokens, cross-attention, residual; norm2 + MLP, residual (V-JEPA 1 layout)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5, use_proj: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.xattn = CrossAttention(dim, num_heads, use_proj)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def attend_fast(self, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact cross-attention of few queries, re-associated: query [1 or B, Q, D], raw tokens [B, N, D] -> [B, Q, D].

        Tokens may be bfloat16 (the fast CPU path): only the matmuls that read them run in their dtype; statistics,
        softmax and everything on the query side stay in float32, so no weight is ever cast.
        """
        B, N, D = x.shape
        Q, h = query.shape[1], self.xattn.num_heads
        d = D // h
        g, b = self.norm1.weight, self.norm1.bias  # [D]
        w_k = self.xattn.kv.weight[:D].view(h, d, D)  # [h, d, D]
        w_v = self.xattn.kv.weight[D:].view(h, d, D)  # [h, d, D]
        b_v = self.xattn.kv.bias[D:].view(h, d)  # [h, d]
        q = self.xattn.q(query).view(-1, Q, h, d)  # [1 or B, Q, h, d]
        u = torch.einsum("bqhe,hed->bqhd", q, w_k) * (g / math.sqrt(d))  # [1 or B, Q, h, D]; key bias cancels
        u = u.reshape(-1, Q * h, D)  # [1 or B, Qh, D]
        # E[x^2] - mu^2 from a norm: cheap passes instead of var_mean's slow one on the CPU. Encoder tokens come out
        # of a LayerNorm, so their mean is small against their spread and the difference keeps its precision.
        stats = torch.promote_types(x.dtype, torch.float32)
        if u.shape[0] == 1:  # one query set for the whole batch: scores and token means in one pass over x
            columns = torch.cat([u[0], u.new_full((1, D), 1.0 / D)])  # [Qh + 1, D]
            both = (x.reshape(B * N, D) @ columns.to(x.dtype).T).view(B, N, Q * h + 1)  # [B, N, Qh + 1]
            raw, mu = both[..., :-1], both[..., -1:].to(stats)  # [B, N, Qh], [B, N, 1]
        else:
            raw = x @ u.to(x.dtype).transpose(1, 2)  # [B, N, Qh]
            mu = (x @ x.new_full((D, 1), 1.0 / D)).to(stats)  # [B, N, 1]; a matmul is the fastest mean on the CPU
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).to(stats)  # [B, N, 1]
        rstd = torch.rsqrt((norm.square() / D - mu.square()).clamp_min(0) + self.norm1.eps)  # [B, N, 1]
        scores = (raw.to(stats) - mu * u.sum(-1).unsqueeze(1)) * rstd  # [B, N, Qh] = x_hat . u
        weights = scores.softmax(dim=1) * rstd  # [B, N, Qh]
        pooled = (weights.to(x.dtype).transpose(1, 2) @ x).to(stats)  # [B, Qh, D]
        pooled = pooled - (weights * mu).sum(1).unsqueeze(-1)  # [B, Qh, D] = sum a x_hat
        pooled = pooled * g + b  # [B, Qh, D] in norm1's output space
        values = torch.einsum("bqhD,hdD->bqhd", pooled.view(-1, Q, h, D), w_v) + b_v  # [B, Q, h, d]
        y = values.reshape(-1, Q, D)  # [B, Q, D]
        return self.xattn.proj(y) if self.xattn.use_proj else y

    def forward(self, query: torch.Tensor, x: torch.Tensor, fast: bool = True) -> torch.Tensor:
        """query [1 or B, Q, D] (one query set may serve the whole batch), tokens [B, N, D] -> [B, Q, D]."""
        if fast:
            y = self.attend_fast(query, x)
        else:
            y = self.xattn(query.expand(x.shape[0], -1, -1), self.norm1(x))
        query = query + y  # [B, Q, D]
        return query + self.mlp(self.norm2(query))


class SelfAttentionBlock(nn.Module):
    """A pre-norm transformer block over the tokens (attentive-deep, V-JEPA 2 style)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, h, N, d]
        x = x + self.proj(y.transpose(1, 2).reshape(B, N, D))  # [B, N, D]
        return x + self.mlp(self.norm2(x))


class AttentivePooler(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_queries: int = 1, mlp_ratio: float = 4.0, depth: int = 1,
                 eps: float = 1e-5, use_proj: bool = False):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, dim))
        nn.init.trunc_normal_(self.query_tokens, std=0.02)
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, num_heads, mlp_ratio, eps) for _ in range(depth - 1))
        self.cross_attention_block = CrossAttentionBlock(dim, num_heads, mlp_ratio, eps, use_proj)

    def forward(self, x: torch.Tensor, fast: bool = True) -> torch.Tensor:
        if len(self.blocks) and not torch.is_autocast_enabled():
            x = x.to(self.query_tokens.dtype)  # bfloat16 CPU tokens: the self-attention blocks run in float32
        for block in self.blocks:
            x = block(x)  # [B, N, D]
        return self.cross_attention_block(self.query_tokens, x, fast).mean(dim=1)  # [1, Q, D] -> [B, D]


def classification_head(dim: int, num_classes: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(),
                             nn.Linear(dim, num_classes))
    raise FerProbeError(f"unknown head '{kind}'; use linear or mlp")


class AttentiveProbe(nn.Module):
    """tokens [B, N, D] -> logits [B, C]; `linear` is named as in V-JEPA's AttentiveClassifier."""

    input_kind = "tokens"

    def __init__(self, dim: int, num_classes: int, num_heads: int = 16, num_queries: int = 1, depth: int = 1,
                 mlp_ratio: float = 4.0, head: str = "linear", use_proj: bool = False, eps: float = 1e-5):
        super().__init__()
        if dim % num_heads:
            raise FerProbeError(f"token width {dim} is not divisible by --num-heads {num_heads}")
        self.pooler = AttentivePooler(dim, num_heads, num_queries, mlp_ratio, depth, eps, use_proj)
        self.head_kind = head
        if head == "linear":
            self.linear = classification_head(dim, num_classes, "linear")
        else:
            self.mlp_head = classification_head(dim, num_classes, head)
        self.fast = True

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.pooler(tokens, self.fast)  # [B, D]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.pooled(tokens)
        return self.linear(pooled) if self.head_kind == "linear" else self.mlp_head(pooled)  # [B, C]


class PooledProbe(nn.Module):
    """Baselines on mean-pooled tokens [B, D]: standardised with training statistics, then linear or MLP."""

    input_kind = "pooled"

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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self.pooled(features))  # [B, C]


def build_probe(kind: str, dim: int, num_classes: int, num_heads: int = 16, num_queries: int = 1,
                head: str = "linear", deep_blocks: int = 3) -> nn.Module:
    if kind == "attentive":
        return AttentiveProbe(dim, num_classes, num_heads, num_queries, depth=1, head=head)
    if kind == "attentive-deep":
        return AttentiveProbe(dim, num_classes, num_heads, num_queries, depth=1 + deep_blocks, head=head)
    if kind == "linear":
        return PooledProbe(dim, num_classes)
    if kind == "mlp":
        return PooledProbe(dim, num_classes, hidden=dim)
    raise FerProbeError(f"unknown probe '{kind}'; use one of: {', '.join(PROBE_TYPES)}")


def load_reference_classifier(state_dict: dict, num_heads: int = 16) -> AttentiveProbe:
    """The V-JEPA 1 AttentiveClassifier state dict -> an AttentiveProbe giving the same logits (fast path)."""
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    try:
        _, num_queries, dim = state["pooler.query_tokens"].shape
        num_classes = state["linear.weight"].shape[0]
        hidden = state["pooler.cross_attention_block.mlp.fc1.weight"].shape[0]
    except KeyError as exc:
        raise FerProbeError(f"not a V-JEPA AttentiveClassifier state dict: missing {exc}") from exc
    depth = 1 + len({k.split(".")[2] for k in state if k.startswith("pooler.blocks.")})
    if depth > 1:
        raise FerProbeError("reference classifiers with self-attention blocks after the cross-attention "
                            "(depth > 1) are not supported")
    probe = AttentiveProbe(dim, num_classes, num_heads, num_queries, depth=1, mlp_ratio=hidden / dim)
    missing, unexpected = probe.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FerProbeError(f"classifier state dict mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return probe.eval()
