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


def pool(x: torch.Tensor, u: torch.Tensor, eps: float, *, matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The re-associated attention pooling: raw tokens x [B, N, D], the stacked key columns of several probes
    u [M, D] -> sum over tokens of softmax(x_hat . u) x_hat per column [B, M, D].

    On the CPU (tokens that need no gradient) it streams each video's tokens in cache-sized chunks (StreamedPool):
    float16 tokens are converted a chunk at a time, to float32 or to matmul_dtype (bfloat16 for the CPU's bfloat16
    runs), and each chunk is read from memory once forward and once backward. Elsewhere (CUDA, or the tokens of
    attentive-deep's self-attention blocks) it is whole_pool."""
    if x.device.type == "cpu" and not x.requires_grad:
        return StreamedPool.apply(x, u, eps, matmul_dtype)
    return whole_pool(x.float() if x.dtype == torch.float16 and not torch.is_autocast_enabled() else x, u, eps)


def whole_pool(x: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    """pool in whole-tensor operations, differentiable in both inputs. It reads the tokens twice (once for the
    scores and token means, once for the pooled sums), and twice more in the backward pass, however large M is.

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


TOKEN_CHUNK = 2048  # tokens of one streamed chunk: 10 MB in float32, resident in the L3 cache of a server CPU


class StreamedPool(torch.autograd.Function):
    """pool for tokens without gradient, one chunk of tokens at a time with an online softmax (running maximum and
    sum, as flash attention). Each chunk serves all its products while it is in cache: the forward pass reads the
    tokens once and the backward pass once more, instead of four times at full size. Matmuls run in float32, or in
    bfloat16 for bfloat16 tokens or when asked (matmul_dtype); the statistics and the softmax always in float32.

    Token means drop out of the products by centring across the width: x_hat . u = rstd x . (u - mean(u)), and
    sum_n a_n x_hat_n = c(sum_n a_n rstd_n x_n) with c(v) = v - mean(v). Backward, with G_m = dL/dpooled_m:
    dL/ds_nm = a_nm (rstd_n x_n . c(G_m) - G_m . pooled_m) and dL/du_m = c(sum_n dL/ds_nm rstd_n x_n)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, u: torch.Tensor, eps: float,  # noqa: PLR0917 (autograd's signature)
                matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        B, N, D = x.shape
        M = u.shape[0]
        matmul_dtype, stats = matmul_dtypes(x, u, matmul_dtype)
        ctx.matmul_dtype = matmul_dtype
        columns = centred(u).T.to(matmul_dtype).contiguous()  # [D, M]
        scores, rstd = x.new_empty((B, N, M), dtype=stats), x.new_empty((B, N, 1), dtype=stats)
        top, total, pooled = u.new_empty(B, M), u.new_empty(B, M), u.new_empty(B, M, D)
        for b in range(B):
            running = u.new_full((M,), -math.inf)  # [M] running maximum of the scores
            sums, weighted = u.new_zeros(M), u.new_zeros(M, D)  # softmax denominators; sum e rstd x [M, D]
            for start, chunk in chunks(x[b], matmul_dtype):  # [n, D]
                n = slice(start, start + chunk.shape[0])
                mu = chunk.sum(-1, keepdim=True, dtype=stats) / D  # [n, 1]
                norm = torch.linalg.vector_norm(chunk, dim=-1, keepdim=True, dtype=stats)  # [n, 1]
                rstd_c = torch.rsqrt((norm.square() / D - mu.square()).clamp_min(0) + eps)  # [n, 1]
                s = torch.mul((chunk @ columns).to(stats), rstd_c, out=scores[b, n])  # [n, M] = x_hat . u
                new = torch.maximum(running, s.amax(0))  # [M]
                rescale = torch.exp(running - new)  # [M]
                e = torch.exp(s - new)  # [n, M]
                sums.mul_(rescale).add_(e.sum(0))
                e.mul_(rstd_c)  # [n, M]
                weighted.mul_(rescale[:, None]).add_((e.T.to(matmul_dtype) @ chunk).to(stats))  # [M, D]
                running = new
                rstd[b, n] = rstd_c
            top[b], total[b] = running, sums
            pooled[b] = centred(weighted) / sums[:, None]  # [M, D]
        ctx.save_for_backward(x, scores, rstd, top, total, pooled)
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scores, rstd, top, total, pooled = ctx.saved_tensors
        matmul_dtype, stats = matmul_dtypes(x, grad, ctx.matmul_dtype)
        grad_u = grad.new_zeros(grad.shape[1:])  # [M, D] before centring
        for b in range(x.shape[0]):
            g = grad[b]  # [M, D]
            g_t = centred(g).T.to(matmul_dtype).contiguous()  # [D, M]
            g_pooled = (g * pooled[b]).sum(1)  # [M]
            for start, chunk in chunks(x[b], matmul_dtype):
                n = slice(start, start + chunk.shape[0])
                a = torch.exp(scores[b, n] - top[b]).div_(total[b])  # [n, M] the softmax
                r = (chunk @ g_t).to(stats).mul_(rstd[b, n]).sub_(g_pooled).mul_(a).mul_(rstd[b, n])  # dL/ds rstd
                grad_u += (r.T.to(matmul_dtype) @ chunk).to(stats)  # [M, D]
        return None, centred(grad_u), None, None


def centred(v: torch.Tensor) -> torch.Tensor:
    """v minus its mean across the width (the last axis)."""
    return v - v.mean(-1, keepdim=True)


def matmul_dtypes(x: torch.Tensor, other: torch.Tensor, wanted: torch.dtype | None = None) \
        -> tuple[torch.dtype, torch.dtype]:
    """(the dtype of the matmuls that read the tokens, the dtype of everything else): float16 tokens are widened to
    float32 (no fast float16 matmul on the CPU), or converted to bfloat16 where wanted; bfloat16 ones multiply as they
    are."""
    matmul_dtype = wanted or (torch.float32 if x.dtype == torch.float16 else x.dtype)
    return matmul_dtype, torch.promote_types(matmul_dtype, other.dtype)


def chunks(x: torch.Tensor, dtype: torch.dtype):
    """(start, tokens [n, D] in dtype) for consecutive TOKEN_CHUNK rows of x [N, D]; converted chunks share one
    buffer, so that a chunk is valid until the next is drawn. float16 reaches bfloat16 through float32: the same
    values as a direct cast, four times faster in torch on the CPU."""
    shape = (min(TOKEN_CHUNK, x.shape[0]), x.shape[1])
    buffer = x.new_empty(shape, dtype=dtype) if x.dtype != dtype else None
    widened = x.new_empty(shape, dtype=torch.float32) if x.dtype == torch.float16 and dtype == torch.bfloat16 \
        else None
    for start in range(0, x.shape[0], TOKEN_CHUNK):
        chunk = x[start:start + TOKEN_CHUNK]
        if widened is not None:
            chunk = widened[:chunk.shape[0]].copy_(chunk)
        yield start, chunk if buffer is None else buffer[:chunk.shape[0]].copy_(chunk)


def attend_many(blocks: list[CrossAttentionBlock], queries: list[torch.Tensor], x: torch.Tensor,
                *, rows: list[list[int]] | None = None, matmul_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Exact cross-attention of several probes over the same raw tokens x [B, N, D] -> per probe [B_p, Q, D].

    All probes' score columns are stacked, so the tokens are traversed a fixed number of times however many probes
    there are. rows (per probe, the batch elements it needs, ascending) limits each probe to its own videos: every
    element is then pooled with the columns of just the probes that use it, so no work is spent on the others.
    matmul_dtype: the dtype the CPU's streamed pooling multiplies float16 tokens in (pool)."""
    eps = {block.norm1.eps for block in blocks}
    if len(eps) != 1:
        raise FerProbeError("probes trained together must share the LayerNorm eps")
    eps = eps.pop()
    kv = [block.kv_weights() for block in blocks]  # P x (W_k, W_v)
    columns = [block.key_columns(query, w_k) for block, query, (w_k, _) in zip(blocks, queries, kv)]  # P x [Qh, D]
    if rows is None:
        pooled = pool(x, torch.cat(columns), eps, matmul_dtype=matmul_dtype)  # [B, M, D]
        parts = pooled.split([c.shape[0] for c in columns], dim=1)  # P x [B, Qh, D]
    else:
        pieces: list[list[torch.Tensor]] = [[] for _ in blocks]
        for b in range(x.shape[0]):
            users = [p for p, mine in enumerate(rows) if b in mine]
            if not users:
                continue
            pooled = pool(x[b:b + 1], torch.cat([columns[p] for p in users]), eps, matmul_dtype=matmul_dtype)[0]
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
