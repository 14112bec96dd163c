"""Tokens of a compact store: coordinates z [..., R] on the store's principal basis, standing for the tokens
x~ = mean + z @ components [..., D]. The probes keep their D-wide parameters and compute on x~ exactly, in R
dimensions: a token's LayerNorm statistics follow from z in O(R) (the components are orthonormal), and every linear
map of x~ is a map of z after an O(D R) product on the parameter side.

Axes: D token width, R rank, M columns (score directions).
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TokenBasis:
    """The basis on the compute device, with what the O(R) statistics need precomputed."""
    mean: torch.Tensor  # [D]
    components: torch.Tensor  # [R, D] orthonormal rows
    statistics: torch.Tensor  # [R, 2]: components @ 1 / D and components @ mean (a token's mean and |x~|^2 from z)
    mean_mean: float  # mean(mean)
    mean_square: float  # |mean|^2

    @classmethod
    def create(cls, mean: np.ndarray, components: np.ndarray, device: torch.device) -> "TokenBasis":
        mean64, components64 = mean.astype(np.float64), components.astype(np.float64)
        width = len(mean)
        statistics = np.stack([components64.sum(1) / width, components64 @ mean64], axis=1)  # [R, 2]
        return cls(mean=torch.from_numpy(mean.astype(np.float32)).to(device),
                   components=torch.from_numpy(components.astype(np.float32)).to(device),
                   statistics=torch.from_numpy(statistics.astype(np.float32)).to(device),
                   mean_mean=float(mean64.mean()), mean_square=float(mean64 @ mean64))

    @property
    def rank(self) -> int:
        return self.components.shape[0]

    @property
    def width(self) -> int:
        return self.components.shape[1]

    def lift(self, z: torch.Tensor) -> torch.Tensor:
        """Coordinates [..., R] -> the tokens they stand for [..., D] (for probes that need every token in D: the
        self-attention blocks of attentive-deep)."""
        return torch.addmm(self.mean.to(z.dtype), z.reshape(-1, self.rank), self.components.to(z.dtype)) \
            .view(*z.shape[:-1], self.width)

    def lift_numpy(self, z: np.ndarray) -> np.ndarray:
        """As lift, for the pooled baselines' clip means [..., R] -> [..., D] float32."""
        return self.lift(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.mean.device)) \
            .cpu().numpy()

    def columns(self, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Directions v [M, D] -> (components @ v^T [R, M], mean . v [M]): x~ . v = z @ columns + offset."""
        return self.components @ directions.T, directions @ self.mean

    def token_statistics(self, z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's LayerNorm mean and reciprocal standard deviation from its coordinates z [n, R] (float32)."""
        zf = z.float()
        return self.statistics_from(zf @ self.statistics, torch.linalg.vector_norm(zf, dim=-1, keepdim=True), eps)

    def statistics_from(self, products: torch.Tensor, norm: torch.Tensor, eps: float) \
            -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) [n, 1] from z @ statistics [n, 2] and |z| [n, 1] (a caller that multiplies z by other
        columns anyway appends `statistics` to them): mean(x~) = mean(mean) + z . c1 and
        |x~|^2 = |mean|^2 + 2 z . (C mean) + |z|^2."""
        mu = products[:, :1] + self.mean_mean  # [n, 1]
        square = norm.square().add_(products[:, 1:], alpha=2).add_(self.mean_square)  # [n, 1] |x~|^2
        return mu, torch.rsqrt((square / self.width - mu.square()).clamp_min(0) + eps)

    def combine(self, weighted: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
        """sum_n w_n z_n [..., M, R] and sum_n w_n [..., M] -> sum_n w_n x~_n [..., M, D]."""
        return weighted @ self.components + totals.unsqueeze(-1) * self.mean
