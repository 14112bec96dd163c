"""The attention of the probes: V-JEPA's cross-attention block with the fast exact path, and the self-attention
block of attentive-deep.

Axes: B clips, N tokens, D width, Q queries, h heads, d = D / h head width, M = sum of Q*h over probes.
The fast path re-associates single/few-query attention so that no token is ever projected to a key or value:
scores = x_hat . (g * W_k^T q) / sqrt(d), pooled = softmax . x_hat, value = W_v (g * pooled + b) + b_v.
Cost O(N*D*h*Q) instead of O(N*D*2D); exact, including gradients. Several probes share one pass over the tokens:
their score columns are stacked into one matmul and their pooled sums into one batched matmul.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from fer_probe.errors import FerProbeError


class MLP(nn.Module):
    """V-JEPA's two-layer GELU MLP; written again here (as in fer_cache.encoders.vit) because fer_probe never
    imports the encoder code."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CrossAttention(nn.Module):
    """Parameter names as in V-JEPA's CrossAttention. Upstream V-JEPA 1 computes `proj` but never applies it
    (use_proj=False); the paper's fork applies it to the attention output (use_proj=True)."""

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

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, eps: float = 1e-5, use_proj: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.xattn = CrossAttention(dim, num_heads, use_proj)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def key_columns(self, query: torch.Tensor) -> torch.Tensor:
        """The query side of the re-associated scores: query [1, Q, D] -> u [Q*h, D]; the key bias cancels."""
        Q, D = query.shape[1:]
        h = self.xattn.num_heads
        d = D // h
        w_k = self.xattn.kv.weight[:D].view(h, d, D)  # [h, d, D]
        q = self.xattn.q(query).view(Q, h, d)  # [Q, h, d]
        u = torch.einsum("qhe,hed->qhd", q, w_k) * (self.norm1.weight / math.sqrt(d))  # [Q, h, D]
        return u.reshape(Q * h, D)  # [Qh, D]

    def attention_output(self, pooled: torch.Tensor, num_queries: int) -> torch.Tensor:
        """Pooled normalised tokens x_hat [B, Qh, D] -> the attention output [B, Q, D] (values, then proj)."""
        B, _, D = pooled.shape
        h = self.xattn.num_heads
        w_v = self.xattn.kv.weight[D:].view(h, D // h, D)  # [h, d, D]
        b_v = self.xattn.kv.bias[D:].view(h, D // h)  # [h, d]
        pooled = pooled * self.norm1.weight + self.norm1.bias  # [B, Qh, D] in norm1's output space
        values = torch.einsum("bqhD,hdD->bqhd", pooled.view(B, num_queries, h, D), w_v) + b_v  # [B, Q, h, d]
        y = values.reshape(B, num_queries, D)  # [B, Q, D]
        return self.xattn.proj(y) if self.xattn.use_proj else y

    def finish(self, query: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual and MLP after the attention: query [1 or B, Q, D], attention output [B, Q, D] -> [B, Q, D]."""
        query = query + y  # [B, Q, D]
        return query + self.mlp(self.norm2(query))

    def forward(self, query: torch.Tensor, x: torch.Tensor, fast: bool = True) -> torch.Tensor:
        """query [1, Q, D] (one query set serves the whole batch), tokens [B, N, D] -> [B, Q, D]."""
        if fast:
            y = attend_many([self], [query], x)[0]
        else:
            y = self.xattn(query.expand(x.shape[0], -1, -1), self.norm1(x))
        return self.finish(query, y)


def pool(x: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    """The re-associated attention pooling: raw tokens x [B, N, D], the stacked key columns of several probes
    u [M, D] -> sum over tokens of softmax(x_hat . u) x_hat per column [B, M, D]. It reads the tokens twice (once for
    the scores and token means, once for the pooled sums), and twice more in the backward pass, however large M is.

    Tokens may be bfloat16 (the fast CPU path): only the matmuls that read them run in their dtype; statistics,
    softmax and everything on the query side stay in float32, so no weight is ever cast."""
    B, N, D = x.shape
    M = u.shape[0]
    stats = torch.promote_types(x.dtype, torch.float32)
    # E[x^2] - mu^2 from a norm: cheap passes instead of var_mean's slow one on the CPU. Encoder tokens come out of a
    # LayerNorm, so their mean is small against their spread and the difference keeps its precision.
    with_mean = torch.cat([u, u.new_full((1, D), 1.0 / D)])  # [M + 1, D]
    both = (x.reshape(B * N, D) @ with_mean.to(x.dtype).T).view(B, N, M + 1)  # [B, N, M + 1]
    raw, mu = both.split([M, 1], dim=-1)  # [B, N, M], [B, N, 1]
    mu = mu.to(stats)
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).to(stats)  # [B, N, 1]
    rstd = torch.rsqrt((norm.square() / D - mu.square()).clamp_min(0) + eps)  # [B, N, 1]
    scores = (raw.to(stats) - mu * u.sum(-1)) * rstd  # [B, N, M] = x_hat . u
    weights = scores.softmax(dim=1) * rstd  # [B, N, M]
    pooled = (weights.to(x.dtype).transpose(1, 2) @ x).to(stats)  # [B, M, D]
    return pooled - (weights * mu).sum(1).unsqueeze(-1)  # [B, M, D] = sum a x_hat


def attend_many(blocks: list[CrossAttentionBlock], queries: list[torch.Tensor], x: torch.Tensor,
                *, rows: list[list[int]] | None = None) -> list[torch.Tensor]:
    """Exact cross-attention of several probes over the same raw tokens x [B, N, D] -> per probe [B_p, Q, D].

    All probes' score columns are stacked, so the tokens are traversed a fixed number of times however many probes
    there are. rows (per probe, the batch elements it needs, ascending) limits each probe to its own videos: every
    element is then pooled with the columns of just the probes that use it, so no work is spent on the others."""
    eps = {block.norm1.eps for block in blocks}
    if len(eps) != 1:
        raise FerProbeError("probes trained together must share the LayerNorm eps")
    eps = eps.pop()
    columns = [block.key_columns(query) for block, query in zip(blocks, queries)]  # P x [Qh, D]
    if rows is None:
        parts = pool(x, torch.cat(columns), eps).split([c.shape[0] for c in columns], dim=1)  # P x [B, Qh, D]
    else:
        pieces: list[list[torch.Tensor]] = [[] for _ in blocks]
        for b in range(x.shape[0]):
            users = [p for p, mine in enumerate(rows) if b in mine]
            if not users:
                continue
            pooled = pool(x[b:b + 1], torch.cat([columns[p] for p in users]), eps)[0]  # [M_b, D]
            for p, part in zip(users, pooled.split([columns[p].shape[0] for p in users])):
                pieces[p].append(part)  # [Qh, D]
        parts = [torch.stack(p) if p else columns[i].new_zeros((0, *columns[i].shape)) for i, p in enumerate(pieces)]
    return [block.attention_output(part, query.shape[1]) for block, query, part in zip(blocks, queries, parts)]


class SelfAttentionBlock(nn.Module):
    """A pre-norm transformer block over the tokens (attentive-deep, V-JEPA 2 style)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, eps: float = 1e-5):
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
