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

from fer_probe.data.coordinates import TokenBasis
from fer_probe.errors import FerProbeError
from fer_probe.probes.pooling import pool


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

    def kv_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_k, W_v) [D, D] each from one split of kv: its backward concatenates the two gradients, where two
        slices would each scatter theirs into a zero-filled copy of the whole [2D, D] weight."""
        w_k, w_v = self.xattn.kv.weight.chunk(2)
        return w_k, w_v

    def key_columns(self, query: torch.Tensor, w_k: torch.Tensor) -> torch.Tensor:
        """The query side of the re-associated scores: query [1, Q, D] -> u [Q*h, D]; the key bias cancels."""
        Q, D = query.shape[1:]
        h = self.xattn.num_heads
        d = D // h
        q = self.xattn.q(query).view(Q, h, d)  # [Q, h, d]
        u = torch.einsum("qhe,hed->qhd", q, w_k.view(h, d, D)) * (self.norm1.weight / math.sqrt(d))  # [Q, h, D]
        return u.reshape(Q * h, D)  # [Qh, D]

    def attention_output(self, pooled: torch.Tensor, num_queries: int, w_v: torch.Tensor) -> torch.Tensor:
        """Pooled normalised tokens x_hat [B, Qh, D] -> the attention output [B, Q, D] (values, then proj)."""
        B, _, D = pooled.shape
        h = self.xattn.num_heads
        b_v = self.xattn.kv.bias.chunk(2)[1].view(h, D // h)  # [h, d]
        pooled = pooled * self.norm1.weight + self.norm1.bias  # [B, Qh, D] in norm1's output space
        values = torch.einsum("bqhD,hdD->bqhd", pooled.view(B, num_queries, h, D), w_v.view(h, D // h, D)) + b_v
        y = values.reshape(B, num_queries, D)  # [B, Q, D]
        return self.xattn.proj(y) if self.xattn.use_proj else y

    def finish(self, query: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual and MLP after the attention: query [1 or B, Q, D], attention output [B, Q, D] -> [B, Q, D]."""
        query = query + y  # [B, Q, D]
        return query + self.mlp(self.norm2(query))

    def forward(self, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """query [1, Q, D] (one query set serves the whole batch), tokens [B, N, D] -> [B, Q, D], on the fast path;
        self.xattn(query, self.norm1(x)) is the straightforward computation it is checked against."""
        return self.finish(query, attend_many([self], [query], x)[0])


def attend_many(blocks: list[CrossAttentionBlock], queries: list[torch.Tensor], x: torch.Tensor,
                *, rows: list[list[int]] | None = None, matmul_dtype: torch.dtype | None = None,
                basis: TokenBasis | None = None) -> list[torch.Tensor]:
    """Exact cross-attention of several probes over the same raw tokens x [B, N, D] -> per probe [B_p, Q, D].

    All probes' score columns are stacked, so the tokens are traversed a fixed number of times however many probes
    there are. rows (per probe, the batch elements it needs, ascending) limits each probe to its own videos: every
    element is then pooled with the columns of just the probes that use it, so no work is spent on the others.
    matmul_dtype: the dtype the CPU's streamed pooling multiplies float16 tokens in (pool); basis: x holds
    coordinates on it [B, N, R] (a compact store), pooled as the tokens they stand for."""
    eps = {block.norm1.eps for block in blocks}
    if len(eps) != 1:
        raise FerProbeError("probes trained together must share the LayerNorm eps")
    eps = eps.pop()
    kv = [block.kv_weights() for block in blocks]  # P x (W_k, W_v)
    columns = [block.key_columns(query, w_k) for block, query, (w_k, _) in zip(blocks, queries, kv)]  # P x [Qh, D]
    if rows is None:
        pooled = pool(x, torch.cat(columns), eps, matmul_dtype=matmul_dtype, basis=basis)  # [B, M, D]
        parts = pooled.split([c.shape[0] for c in columns], dim=1)  # P x [B, Qh, D]
    else:
        pieces: list[list[torch.Tensor]] = [[] for _ in blocks]
        for b in range(x.shape[0]):
            users = [p for p, mine in enumerate(rows) if b in mine]
            if not users:
                continue
            pooled = pool(x[b:b + 1], torch.cat([columns[p] for p in users]), eps, matmul_dtype=matmul_dtype,
                          basis=basis)[0]
            for p, part in zip(users, pooled.split([columns[p].shape[0] for p in users])):
                pieces[p].append(part)  # [Qh, D]
        parts = [torch.stack(p) if p else columns[i].new_zeros((0, *columns[i].shape)) for i, p in enumerate(pieces)]
    return [block.attention_output(part, query.shape[1], w_v)
            for block, query, part, (_, w_v) in zip(blocks, queries, parts, kv)]


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
