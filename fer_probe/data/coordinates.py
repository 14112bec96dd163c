"""Tokens of a compact store: coordinates z [..., R] on the store's principal basis, standing for the tokens
x~ = mean + z @ components [..., D]. The probes keep their D-wide parameters and compute on x~ exactly, in R
dimensions: a token's LayerNorm statistics follow from z in O(R) (the components are orthonormal), and every linear
map of x~ is a map of z after an O(D R) product on the parameter side.

The reader hands coordinates out normalised, [rstd z, rstd] [..., R + 1] with rstd the LayerNorm 1/std of x~: the
attentive probes' LayerNorm is then folded into the coordinates once per read (once per run for a store kept in
memory), and x_hat . u and sums of x_hat are products with them and nothing else (probes.pooling).

Axes: D token width, R rank, M columns (score directions).
"""

from dataclasses import dataclass

import numpy as np
import torch

NORM_EPS = 1e-5  # the LayerNorm eps of the attentive probes, which normalised coordinates are made for


@dataclass(frozen=True)
class TokenBasis:
    """The basis on the compute device, with what the O(R) statistics need precomputed."""
    mean: torch.Tensor  # [D]
    components: torch.Tensor  # [R, D] orthonormal rows
    statistics: torch.Tensor  # [R, 2] (CPU): components @ 1 / D and components @ mean (a token's mean and |x~|^2)
    mean_mean: float  # mean(mean)
    mean_square: float  # |mean|^2

    @classmethod
    def create(cls, mean: np.ndarray, components: np.ndarray, device: torch.device) -> "TokenBasis":
        mean64, components64 = mean.astype(np.float64), components.astype(np.float64)
        width = len(mean)
        statistics = np.stack([components64.sum(1) / width, components64 @ mean64], axis=1)  # [R, 2]
        return cls(mean=torch.from_numpy(mean.astype(np.float32)).to(device),
                   components=torch.from_numpy(components.astype(np.float32)).to(device),
                   statistics=torch.from_numpy(statistics.astype(np.float32)),
                   mean_mean=float(mean64.mean()), mean_square=float(mean64 @ mean64))

    @property
    def rank(self) -> int:
        return self.components.shape[0]

    @property
    def width(self) -> int:
        return self.components.shape[1]

    def rstd(self, z: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
        """Each token's LayerNorm 1/std [..., 1] from its coordinates z [..., R] (float32, on the CPU):
        mean(x~) = mean(mean) + z . c1 and |x~|^2 = |mean|^2 + 2 z . (C mean) + |z|^2."""
        products = z @ self.statistics  # [..., 2]
        mu = products[..., :1] + self.mean_mean
        square = torch.linalg.vector_norm(z, dim=-1, keepdim=True).square_() \
            .add_(products[..., 1:], alpha=2).add_(self.mean_square)  # [..., 1] |x~|^2
        return torch.rsqrt((square / self.width - mu.square()).clamp_min_(0) + eps)

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Coordinates z [..., R] -> normalised coordinates [rstd z, rstd] [..., R + 1] (float32)."""
        z = z.float()
        rstd = self.rstd(z.cpu()).to(z.device)
        return torch.cat([z * rstd, rstd], dim=-1)

    def coordinates(self, normalised: torch.Tensor) -> torch.Tensor:
        """Normalised coordinates [..., R + 1] -> the coordinates z [..., R] (to float32 rounding)."""
        return normalised[..., :-1] / normalised[..., -1:]

    def tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Coordinates z [..., R] -> the tokens they stand for, mean + z @ components [..., D]."""
        return torch.addmm(self.mean.to(z.dtype), z.reshape(-1, self.rank), self.components.to(z.dtype)) \
            .view(*z.shape[:-1], self.width)

    def lift(self, normalised: torch.Tensor) -> torch.Tensor:
        """Normalised coordinates [..., R + 1] -> the tokens they stand for [..., D] (for probes that need every token
        in D: the self-attention blocks of attentive-deep, the embedding plot)."""
        return self.tokens(self.coordinates(normalised))

    def lift_means(self, z: np.ndarray) -> np.ndarray:
        """Mean coordinates [..., R] -> the mean tokens they stand for [..., D] float32 (the pooled baselines'
        clip means)."""
        return self.tokens(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.mean.device)) \
            .cpu().numpy()

    def columns(self, directions: torch.Tensor) -> torch.Tensor:
        """Directions v [M, D] -> the columns [C v^T ; mean . v] [R + 1, M] that apply them to normalised
        coordinates: [rstd z, rstd] @ columns = rstd x~ . v."""
        return torch.cat([self.components @ directions.T, (directions @ self.mean)[None]])

    def combine(self, weighted: torch.Tensor) -> torch.Tensor:
        """sum_n w_n [rstd_n z_n, rstd_n] [..., M, R + 1] -> sum_n w_n rstd_n x~_n [..., M, D]."""
        return weighted[..., :-1] @ self.components + weighted[..., -1:] * self.mean
