"""The principal basis of a compact store (schema 2): every token stored as its coordinates z on R principal
directions of the encoder's tokens, x~ = mean + z @ components. Fitting one from a token sample, projecting onto it,
and its nodes in a store (`basis/mean` [D], `basis/components` [R, D], `basis/variance` [R], `basis/spectrum` [D]).

Axes: n sampled tokens, D token width, R rank.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
import zarr

NODES = ("basis/mean", "basis/components", "basis/variance", "basis/spectrum")
CURVE_RANKS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class Basis:
    """R orthonormal directions (rows of `components`, by decreasing variance) around the mean token."""
    mean: np.ndarray  # [D] float32
    components: np.ndarray  # [R, D] float32, orthonormal rows
    variance: np.ndarray  # [R] each component's variance in the sample
    spectrum: np.ndarray  # [D] every principal variance of the sample, decreasing: the explained-share curve
    fitted_on: dict = field(default_factory=dict)  # the sample: parent store, its fingerprint, tokens, videos, seed

    @property
    def rank(self) -> int:
        return int(self.components.shape[0])

    @property
    def width(self) -> int:
        return int(self.components.shape[1])

    @property
    def explained(self) -> float:
        """The share of the sample's token variance that the R directions keep."""
        return float(self.variance.sum() / max(float(self.spectrum.sum()), 1e-30))

    @property
    def digest(self) -> str:
        """What identifies the basis in a fingerprint: sha256 of its mean and components."""
        return hashlib.sha256(self.mean.tobytes() + self.components.tobytes()).hexdigest()

    def consistent(self, coordinates: int) -> bool:
        """Whether its nodes fit each other and a store whose tokens hold `coordinates` values each."""
        R, D = self.components.shape
        return (R == coordinates and self.mean.shape == (D,) and self.variance.shape == (R,)
                and self.spectrum.shape == (D,) and R < D)

    def curve(self) -> dict[int, float]:
        """Explained share of the sample's variance at ranks 8, 16, ... up to the width: how to choose R."""
        total = max(float(self.spectrum.sum()), 1e-30)
        cumulative = np.cumsum(self.spectrum)
        return {r: float(cumulative[r - 1] / total) for r in CURVE_RANKS if r <= len(self.spectrum)}

    def describe(self) -> dict:
        """The basis block of a compact store's `storage` attribute (part of its fingerprint)."""
        return {"rank": self.rank, "explained": round(self.explained, 6), "digest": self.digest,
                "fitted_on": dict(self.fitted_on), "curve": {str(r): round(s, 6) for r, s in self.curve().items()}}

    def project(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens [..., D] -> coordinates [..., R] float32 (the nearest point of the subspace)."""
        flat = np.asarray(tokens, dtype=np.float32).reshape(-1, self.width)  # one BLAS product, not one per clip
        return (flat @ self.components.T - self.mean @ self.components.T).reshape(*np.shape(tokens)[:-1], self.rank)

    def reconstruct(self, coordinates: np.ndarray) -> np.ndarray:
        """Coordinates [..., R] -> tokens [..., D] float32: x~ = mean + z @ components."""
        return (self.mean + np.asarray(coordinates, dtype=np.float32) @ self.components).astype(np.float32)

    def write(self, group: zarr.Group) -> None:
        for name, values in zip(NODES, (self.mean, self.components, self.variance, self.spectrum)):
            group.create_array(name, shape=values.shape, chunks=values.shape, dtype="float32", fill_value=0,
                               overwrite=True)[...] = values
        group["basis/components"].attrs.update({"fitted_on": dict(self.fitted_on)})

    @classmethod
    def read(cls, group: zarr.Group) -> "Basis":
        mean, components, variance, spectrum = (np.asarray(group[name][...], dtype=np.float32) for name in NODES)
        return cls(mean=mean, components=components, variance=variance, spectrum=spectrum,
                   fitted_on=dict(group["basis/components"].attrs.get("fitted_on", {})))


class BasisFit:
    """The sample's mean and covariance, accumulated a block of tokens at a time (float32 products summed in
    float64, around a shift taken from the first block so that the covariance keeps its precision)."""

    def __init__(self, width: int):
        self.width, self.count = width, 0
        self.shift: np.ndarray | None = None  # [D]
        self.sum = np.zeros(width)  # [D] of shifted tokens
        self.products = np.zeros((width, width))  # [D, D] of shifted tokens

    def add(self, tokens: np.ndarray) -> None:
        """A block of sampled tokens [n, D] (any float dtype)."""
        x = np.asarray(tokens, dtype=np.float32).reshape(-1, self.width)
        if not len(x):
            return
        if self.shift is None:
            self.shift = x.mean(0)
        shifted = x - self.shift  # [n, D]
        self.sum += shifted.sum(0, dtype=np.float64)
        self.products += shifted.T @ shifted
        self.count += len(x)

    def fit(self, rank: int, fitted_on: dict) -> Basis:
        """The R directions of largest variance; each component's sign fixed (its largest entry positive), so the
        same sample gives the same basis on every machine."""
        if self.count < 2:
            raise ValueError("a basis needs at least two sampled tokens")
        if not 0 < rank < self.width:
            raise ValueError(f"rank {rank} must be between 1 and the token width {self.width} (exclusive)")
        mean_shifted = self.sum / self.count
        covariance = self.products / self.count - np.outer(mean_shifted, mean_shifted)  # [D, D]
        values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)  # ascending
        order = np.argsort(values)[::-1]
        values, vectors = np.clip(values[order], 0, None), vectors[:, order]
        components = vectors[:, :rank].T  # [R, D]
        signs = np.sign(components[np.arange(rank), np.abs(components).argmax(1)])
        components = components * signs[:, None]
        return Basis(mean=(self.shift + mean_shifted).astype(np.float32), components=components.astype(np.float32),
                     variance=values[:rank].astype(np.float32), spectrum=values.astype(np.float32),
                     fitted_on=fitted_on | {"tokens": int(self.count)})


def sample_positions(row: int, count: int, available: int, *, seed: int) -> np.ndarray:
    """The token positions (flat over a video's K x S x N) sampled from store row `row`, seeded per row."""
    if count >= available:
        return np.arange(available)
    return np.sort(np.random.default_rng([seed, row]).choice(available, size=count, replace=False))
