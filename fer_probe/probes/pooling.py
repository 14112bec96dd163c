"""The re-associated attention pooling of the cross-attention probes: scores x_hat . u and pooled sums
sum softmax(x_hat . u) x_hat, without projecting a token to a key or value (attention.py explains the re-association).

Tokens arrive in one of two geometries: as themselves (x [B, N, D]), or as a compact store's normalised coordinates
(zn = [rstd z, rstd] [B, N, R + 1], standing for x~ = mean + z @ components: data.coordinates.TokenBasis). The
computation is the same in both; on coordinates the LayerNorm is already folded in, a direction is applied to a token
through R + 1 columns and pooled coordinates return to D once per column, so a compact store costs R/D of the token
work, exactly.

Axes: B clips, N tokens, D width, R rank, M = sum of Q*h over probes (score columns).
"""

import math

import torch

from fer_probe.data.coordinates import NORM_EPS, TokenBasis
from fer_probe.errors import FerProbeError


def pool(x: torch.Tensor, u: torch.Tensor, eps: float, *, matmul_dtype: torch.dtype | None = None,
         basis: TokenBasis | None = None) -> torch.Tensor:
    """Raw tokens x [B, N, D] (or normalised coordinates [B, N, R + 1] on `basis`), the stacked key columns of
    several probes u [M, D] -> sum over tokens of softmax(x_hat . u) x_hat per column [B, M, D].

    On the CPU (tokens that need no gradient) it streams each video's tokens in cache-sized chunks (StreamedPool,
    StreamedCompactPool): float16 tokens are converted a chunk at a time, to float32 or to matmul_dtype (bfloat16 for
    the CPU's bfloat16 runs; coordinates always multiply in float32), and each chunk is read from memory once forward
    and once backward. Elsewhere (CUDA, or the tokens of attentive-deep's self-attention blocks) it is whole_pool."""
    streamed = x.device.type == "cpu" and not x.requires_grad
    if basis is not None:
        if eps != NORM_EPS:
            raise FerProbeError(f"a compact store's coordinates are normalised for LayerNorm eps {NORM_EPS}; this "
                                f"probe's is {eps}")
        return StreamedCompactPool.apply(x, u, basis) if streamed else whole_pool_compact(x, u, basis=basis)
    if streamed:
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


def whole_pool_compact(zn: torch.Tensor, u: torch.Tensor, *, basis: TokenBasis) -> torch.Tensor:
    """whole_pool on normalised coordinates zn [B, N, R + 1]: x_hat . u = zn @ columns(c(u)), and sum a x_hat is
    the sum of a zn lifted once per column (TokenBasis.combine), centred."""
    columns = basis.columns(centred(u)).to(zn.dtype)  # [R + 1, M]
    weights = (zn @ columns).float().softmax(dim=1)  # [B, N, M]
    weighted = (weights.to(zn.dtype).transpose(1, 2) @ zn).float()  # [B, M, R + 1]
    return centred(basis.combine(weighted))  # [B, M, D] = sum a x_hat


TOKEN_CHUNK = 2048  # tokens of one streamed chunk at D = 1280: 10 MB in float32, resident in the L3 cache of a
CHUNK_VALUES = TOKEN_CHUNK * 1280  # server CPU; narrower tokens (a compact store's coordinates) take longer chunks


class OnlineSoftmax:
    """The softmax over tokens that arrive a chunk at a time (a running maximum and sum, as flash attention): each
    chunk's exp(s - the maximum so far), with the sums and the product accumulated with them (`weighted`) rescaled
    whenever the maximum grows. Per score column: M."""

    def __init__(self, u: torch.Tensor, width: int):
        M = u.shape[0]
        self.top = u.new_full((M,), -math.inf)  # [M] running maximum of the scores
        self.total = u.new_zeros(M)  # [M] softmax denominators
        self.weighted = u.new_zeros(M, width)  # what the caller accumulates with exp(s - top)

    def step(self, s: torch.Tensor) -> torch.Tensor:
        """Scores of a chunk [n, M] -> exp(s - top) [n, M], the running sums brought up to date."""
        new = torch.maximum(self.top, s.amax(0))  # [M]
        rescale = torch.exp(self.top - new)  # [M]
        e = torch.exp(s - new)  # [n, M]
        self.total.mul_(rescale).add_(e.sum(0))
        self.weighted.mul_(rescale[:, None])
        self.top = new
        return e


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
        B, N, _ = x.shape
        M, D = u.shape
        matmul_dtype, stats = matmul_dtypes(x, u, matmul_dtype)
        ctx.matmul_dtype = matmul_dtype
        columns = centred(u).T.to(matmul_dtype).contiguous()  # [D, M]
        scores, rstd = x.new_empty((B, N, M), dtype=stats), x.new_empty((B, N, 1), dtype=stats)
        top, total, pooled = u.new_empty(B, M), u.new_empty(B, M), u.new_empty(B, M, D)
        for b in range(B):
            softmax = OnlineSoftmax(u, D)  # weighted: sum e rstd x [M, D]
            for start, chunk in chunks(x[b], matmul_dtype):  # [n, D]
                n = slice(start, start + chunk.shape[0])
                rstd_c = token_rstd(chunk, eps, stats)  # [n, 1]
                s = torch.mul((chunk @ columns).to(stats), rstd_c, out=scores[b, n])  # [n, M] x_hat . u
                e = softmax.step(s).mul_(rstd_c)  # [n, M]
                softmax.weighted.add_((e.T.to(matmul_dtype) @ chunk).to(stats))
                rstd[b, n] = rstd_c
            top[b], total[b] = softmax.top, softmax.total
            pooled[b] = centred(softmax.weighted) / softmax.total[:, None]
        ctx.save_for_backward(x, scores, rstd, top, total, pooled)
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scores, rstd, top, total, pooled = ctx.saved_tensors
        matmul_dtype, stats = matmul_dtypes(x, grad, ctx.matmul_dtype)
        grad_u = grad.new_zeros(grad.shape[1:])  # [M, D] before centring
        for b in range(x.shape[0]):
            g, unscale = scaled_columns(grad[b])  # [M, D], [M, 1]
            g_t = centred(g).T.to(matmul_dtype).contiguous()  # [D, M]
            g_pooled = (g * pooled[b]).sum(1)  # [M]
            for start, chunk in chunks(x[b], matmul_dtype):
                n = slice(start, start + chunk.shape[0])
                a = torch.exp(scores[b, n] - top[b]).div_(total[b])  # [n, M] the softmax
                r = (chunk @ g_t).to(stats).mul_(rstd[b, n]).sub_(g_pooled).mul_(a).mul_(rstd[b, n])  # dL/ds rstd
                grad_u += (r.T.to(matmul_dtype) @ chunk).to(stats) * unscale  # [M, D]
        return None, centred(grad_u), None, None


class StreamedCompactPool(torch.autograd.Function):
    """StreamedPool on normalised coordinates zn = [rstd z, rstd] [B, N, R + 1] (float32, or converted a chunk at a
    time): the LayerNorm is in them, so the scores are zn @ columns(c(u)) and the pooled sums a product of the
    softmax with zn, lifted once per column; no per-token statistics or scaling. Backward, with G_m = dL/dpooled_m:
    dL/ds_nm = a_nm (zn_n @ columns(c(G_m)) - G_m . pooled_m), dL/du_m = c(combine(sum_n dL/ds_nm zn_n))."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, u: torch.Tensor, basis: TokenBasis) -> torch.Tensor:  # noqa: PLR0917 (autograd)
        B, N, W = x.shape
        M, D = u.shape
        ctx.basis = basis
        columns = basis.columns(centred(u)).contiguous()  # [R + 1, M]
        scores = x.new_empty((B, N, M), dtype=torch.float32)
        top, total, pooled = u.new_empty(B, M), u.new_empty(B, M), u.new_empty(B, M, D)
        for b in range(B):
            softmax = OnlineSoftmax(u, W)  # weighted: sum e zn [M, R + 1]
            for start, chunk in chunks(x[b], torch.float32):  # [n, R + 1]
                s = torch.mm(chunk, columns, out=scores[b, start:start + chunk.shape[0]])  # [n, M] x_hat . u
                softmax.weighted.addmm_(softmax.step(s).T, chunk)
            top[b], total[b] = softmax.top, softmax.total
            pooled[b] = centred(basis.combine(softmax.weighted)) / softmax.total[:, None]
        ctx.save_for_backward(x, scores, top, total, pooled)
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scores, top, total, pooled = ctx.saved_tensors
        basis = ctx.basis
        grad_u = grad.new_zeros(grad.shape[1:])  # [M, D] before centring
        for b in range(x.shape[0]):
            g, unscale = scaled_columns(grad[b])  # [M, D], [M, 1]
            g_columns = basis.columns(centred(g)).contiguous()  # [R + 1, M]
            g_pooled = (g * pooled[b]).sum(1)  # [M]
            summed = g.new_zeros(g.shape[0], x.shape[2])  # sum_n total dL/ds_nm zn_n [M, R + 1]
            for start, chunk in chunks(x[b], torch.float32):
                e = torch.exp(scores[b, start:start + chunk.shape[0]] - top[b])  # [n, M] the softmax times total
                summed.addmm_(e.mul_((chunk @ g_columns).sub_(g_pooled)).T, chunk)
            grad_u += basis.combine(summed / total[b][:, None]) * unscale
        return None, centred(grad_u), None


def scaled_columns(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g [M, D] with each column (row m) multiplied by the power of two that takes its largest value into [1, 2), and
    the powers that undo it [M, 1]. The backward passes are linear in g, and powers of two scale every product and
    sum exactly, so the result is the same bits; but a probe certain of a video (logit gaps past 87) hands gradients
    of 1e-37, whose products fall below float32's normal range, and every such product runs 15x slower on x86 CPUs
    (microcode assists: 0.8 s of one step of the benchmark's paper-recipe cv)."""
    top = g.abs().amax(-1, keepdim=True)  # [M, 1]
    exponent = torch.frexp(top).exponent.clamp_min(-126)  # top = mantissa 2^exponent, mantissa in [0.5, 1)
    one = torch.ones_like(top)
    return g * torch.ldexp(one, 1 - exponent), torch.ldexp(one, exponent - 1)


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
