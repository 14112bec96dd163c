"""The re-associated attention pooling of the cross-attention probes: scores x_hat . u and pooled sums
sum softmax(x_hat . u) x_hat, without projecting a token to a key or value (attention.py explains the re-association).

Tokens arrive in one of two geometries: as themselves (x [B, N, D]), or as coordinates on a compact store's basis
(z [B, N, R], standing for x~ = mean + z @ components: data.coordinates.TokenBasis). The computation is the same in
both; the basis only changes how a direction is applied to a token, how a token's LayerNorm statistics are found and
how pooled coordinates return to D, so a compact store costs R/D of the token work, exactly.

Axes: B clips, N tokens, D width, R rank, M = sum of Q*h over probes (score columns).
"""

import math

import torch

from fer_probe.data.coordinates import TokenBasis


def pool(x: torch.Tensor, u: torch.Tensor, eps: float, *, matmul_dtype: torch.dtype | None = None,
         basis: TokenBasis | None = None) -> torch.Tensor:
    """Raw tokens x [B, N, D] (or coordinates [B, N, R] on `basis`), the stacked key columns of several probes
    u [M, D] -> sum over tokens of softmax(x_hat . u) x_hat per column [B, M, D].

    On the CPU (tokens that need no gradient) it streams each video's tokens in cache-sized chunks (StreamedPool):
    float16 tokens are converted a chunk at a time, to float32 or to matmul_dtype (bfloat16 for the CPU's bfloat16
    runs; coordinates always multiply in float32), and each chunk is read from memory once forward and once backward.
    Elsewhere (CUDA, or the tokens of attentive-deep's self-attention blocks) it is whole_pool."""
    if x.device.type == "cpu" and not x.requires_grad:
        return StreamedPool.apply(x, u, eps, torch.float32 if basis is not None else matmul_dtype, basis)
    if basis is not None:
        return whole_pool_compact(x, u, eps, basis=basis)
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


def whole_pool_compact(z: torch.Tensor, u: torch.Tensor, eps: float, *, basis: TokenBasis) -> torch.Tensor:
    """whole_pool on coordinates z [B, N, R]: x~ . c(u) = z @ (C c(u)^T) + mean . c(u), the statistics from z
    (TokenBasis.token_statistics, in float32 outside autocast), and sum w x~ lifted once per column."""
    B, N, R = z.shape
    columns, offset = basis.columns(centred(u))  # [R, M], [M]
    flat = z.reshape(B * N, R)
    with torch.autocast(z.device.type, enabled=False):
        _, rstd = basis.token_statistics(flat, eps)  # [BN, 1]
    rstd = rstd.view(B, N, 1)
    scores = ((flat @ columns.to(z.dtype)).view(B, N, -1).float() + offset) * rstd  # [B, N, M] = x_hat . u
    weights = scores.softmax(dim=1) * rstd  # [B, N, M]
    weighted = (weights.to(z.dtype).transpose(1, 2) @ z).float()  # [B, M, R]
    return centred(basis.combine(weighted, weights.sum(1)))  # [B, M, D] = sum a x_hat


TOKEN_CHUNK = 2048  # tokens of one streamed chunk at D = 1280: 10 MB in float32, resident in the L3 cache of a
CHUNK_VALUES = TOKEN_CHUNK * 1280  # server CPU; narrower tokens (a compact store's coordinates) take longer chunks


class StreamedPool(torch.autograd.Function):
    """pool for tokens without gradient, one chunk of tokens at a time with an online softmax (running maximum and
    sum, as flash attention). Each chunk serves all its products while it is in cache: the forward pass reads the
    tokens once and the backward pass once more, instead of four times at full size. Matmuls run in float32, or in
    bfloat16 for bfloat16 tokens or when asked (matmul_dtype); the statistics and the softmax always in float32.

    Token means drop out of the products by centring across the width: x_hat . u = rstd x . (u - mean(u)), and
    sum_n a_n x_hat_n = c(sum_n a_n rstd_n x_n) with c(v) = v - mean(v). Backward, with G_m = dL/dpooled_m:
    dL/ds_nm = a_nm (rstd_n x_n . c(G_m) - G_m . pooled_m) and dL/du_m = c(sum_n dL/ds_nm rstd_n x_n).
    On coordinates (basis), x . c(v) is z @ (C c(v)^T) + mean . c(v) and sums of x are lifted once per column."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, u: torch.Tensor, eps: float,  # noqa: PLR0917 (autograd's signature)
                matmul_dtype: torch.dtype | None = None, basis: TokenBasis | None = None) -> torch.Tensor:
        B, N, _ = x.shape
        M, D = u.shape
        matmul_dtype, stats = matmul_dtypes(x, u, matmul_dtype)
        ctx.matmul_dtype, ctx.basis = matmul_dtype, basis
        columns, offset = directions(centred(u), basis, matmul_dtype, with_statistics=True)  # [D, M] or [R, M + 2]
        scores, rstd = x.new_empty((B, N, M), dtype=stats), x.new_empty((B, N, 1), dtype=stats)
        top, total, pooled = u.new_empty(B, M), u.new_empty(B, M), u.new_empty(B, M, D)
        for b in range(B):
            running = u.new_full((M,), -math.inf)  # [M] running maximum of the scores
            sums, weighted = u.new_zeros(M), u.new_zeros(M, x.shape[2])  # softmax denominators; sum e rstd x
            weights = u.new_zeros(M)  # sum e rstd (coordinates only: the mean token's share of the pooled sum)
            for start, chunk in chunks(x[b], matmul_dtype):  # [n, D or R]
                n = slice(start, start + chunk.shape[0])
                raw = (chunk @ columns).to(stats)  # [n, M] (+ the statistics' 2 columns on coordinates)
                rstd_c = token_rstd(chunk, eps, stats) if basis is None else \
                    basis.statistics_from(raw[:, M:], torch.linalg.vector_norm(chunk, dim=-1, keepdim=True), eps)[1]
                s = torch.mul(raw if offset is None else raw[:, :M].add_(offset), rstd_c, out=scores[b, n])  # x_hat.u
                new = torch.maximum(running, s.amax(0))  # [M]
                rescale = torch.exp(running - new)  # [M]
                e = torch.exp(s - new)  # [n, M]
                sums.mul_(rescale).add_(e.sum(0))
                e.mul_(rstd_c)  # [n, M]
                weighted.mul_(rescale[:, None]).add_((e.T.to(matmul_dtype) @ chunk).to(stats))  # [M, D or R]
                if basis is not None:
                    weights.mul_(rescale).add_(e.sum(0))
                running = new
                rstd[b, n] = rstd_c
            top[b], total[b] = running, sums
            pooled[b] = centred(weighted if basis is None else basis.combine(weighted, weights)) / sums[:, None]
        ctx.save_for_backward(x, scores, rstd, top, total, pooled)
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scores, rstd, top, total, pooled = ctx.saved_tensors
        basis = ctx.basis
        matmul_dtype, stats = matmul_dtypes(x, grad, ctx.matmul_dtype)
        grad_u = grad.new_zeros(grad.shape[1:])  # [M, D] before centring
        for b in range(x.shape[0]):
            g = grad[b]  # [M, D]
            g_t, g_offset = directions(centred(g), basis, matmul_dtype)  # [D or R, M], [M] or None
            g_pooled = (g * pooled[b]).sum(1)  # [M]
            grad_z = grad_u if basis is None else g.new_zeros(g.shape[0], x.shape[2])  # sum r x: [M, D] or [M, R]
            grad_weights = g.new_zeros(g.shape[0])  # sum r (coordinates only)
            for start, chunk in chunks(x[b], matmul_dtype):
                n = slice(start, start + chunk.shape[0])
                a = torch.exp(scores[b, n] - top[b]).div_(total[b])  # [n, M] the softmax
                raw = (chunk @ g_t).to(stats)  # [n, M] x . c(G)
                r = (raw if g_offset is None else raw.add_(g_offset)).mul_(rstd[b, n]).sub_(g_pooled).mul_(a) \
                    .mul_(rstd[b, n])  # dL/ds rstd
                grad_z += (r.T.to(matmul_dtype) @ chunk).to(stats)  # [M, D or R]
                if basis is not None:
                    grad_weights += r.sum(0)
            if basis is not None:
                grad_u += basis.combine(grad_z, grad_weights)
        return None, centred(grad_u), None, None, None


def directions(v: torch.Tensor, basis: TokenBasis | None, matmul_dtype: torch.dtype, *,
               with_statistics: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Directions v [M, D] as the columns that apply them to a chunk of tokens: v^T [D, M], or on coordinates
    (C v^T [R, M], mean . v [M]), with the basis's statistics columns appended where asked ([R, M + 2])."""
    if basis is None:
        return v.T.to(matmul_dtype).contiguous(), None
    columns, offset = basis.columns(v)
    if with_statistics:
        columns = torch.cat([columns, basis.statistics], dim=1)
    return columns.to(matmul_dtype).contiguous(), offset


def token_rstd(chunk: torch.Tensor, eps: float, stats: torch.dtype) -> torch.Tensor:
    """Each token's LayerNorm 1/std [n, 1]."""
    D = chunk.shape[1]
    mu = chunk.sum(-1, keepdim=True, dtype=stats) / D  # [n, 1]
    norm = torch.linalg.vector_norm(chunk, dim=-1, keepdim=True, dtype=stats)  # [n, 1]
    return torch.rsqrt((norm.square() / D - mu.square()).clamp_min(0) + eps)


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
    """(start, tokens [n, D] in dtype) for consecutive chunks of x [N, D] (TOKEN_CHUNK rows, a multiple of it for
    narrower tokens); converted chunks share one
    buffer, so that a chunk is valid until the next is drawn. float16 reaches bfloat16 through float32: the same
    values as a direct cast, four times faster in torch on the CPU."""
    rows = TOKEN_CHUNK * max(1, CHUNK_VALUES // (TOKEN_CHUNK * x.shape[1]))  # TOKEN_CHUNK rows at D >= 1280
    shape = (min(rows, x.shape[0]), x.shape[1])
    buffer = x.new_empty(shape, dtype=dtype) if x.dtype != dtype else None
    widened = x.new_empty(shape, dtype=torch.float32) if x.dtype == torch.float16 and dtype == torch.bfloat16 \
        else None
    for start in range(0, x.shape[0], rows):
        chunk = x[start:start + rows]
        if widened is not None:
            chunk = widened[:chunk.shape[0]].copy_(chunk)
        yield start, chunk if buffer is None else buffer[:chunk.shape[0]].copy_(chunk)
