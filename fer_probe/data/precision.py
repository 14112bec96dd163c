"""Where and in what precision a probe run computes, resolved once per run into one `Precision` that the reader,
the trainer and the scorer read: the device, the dtype the probes compute in, the dtype tokens travel in from the
store, what the CPU's streamed pooling multiplies in, autocast, and how tokens are represented (as themselves, or
as coordinates on a compact store's basis, which the store's reader sets)."""

from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch

from fer_probe.data.coordinates import TokenBasis
from fer_probe.errors import FerProbeError

STORED_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise FerProbeError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FerProbeError("device cuda was asked for, but no CUDA GPU is visible; use the CPU")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """A run's numbers: float32 on the CPU (exact, deterministic); bfloat16 autocast on CUDA (auto); float16 autocast
    with a gradient scaler on CUDA, as the reference trains; bfloat16 on the CPU multiplies the tokens in bfloat16
    inside the streamed pooling (not exact)."""
    device: torch.device
    compute: torch.dtype  # what the probes compute in: float32, or bfloat16/float16
    basis: TokenBasis | None = None  # tokens arrive as coordinates on it (a compact store; set by its reader)

    @classmethod
    def resolve(cls, precision: str = "auto", device: str = "auto") -> "Precision":
        """A ProbeConfig's `precision` and `device` -> the run's Precision."""
        where = resolve_device(device)
        cuda = where.type == "cuda"
        if precision == "float16" and not cuda:
            raise FerProbeError("precision float16 (autocast with a gradient scaler) is for CUDA; on the CPU use "
                                "float32 or bfloat16")
        if precision not in ("auto", "float32", "bfloat16", "float16"):
            raise FerProbeError(f"precision must be auto, float32, bfloat16 or float16, got '{precision}'")
        compute = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(
            precision, torch.bfloat16 if cuda else torch.float32)
        return cls(device=where, compute=compute)

    def with_basis(self, basis: TokenBasis | None) -> "Precision":
        """The same numbers, for tokens that arrive as coordinates on `basis` (None: as themselves)."""
        return replace(self, basis=basis)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def scaled(self) -> bool:
        """float16 training needs a gradient scaler."""
        return self.compute == torch.float16

    @property
    def matmul(self) -> torch.dtype | None:
        """What the CPU's streamed pooling multiplies float16 tokens in: bfloat16 for a bfloat16 run (a chunk
        converted at a time), else None (float32; CUDA casts on the device)."""
        return torch.bfloat16 if not self.cuda and self.compute == torch.bfloat16 else None

    def transfer(self, storage: str) -> torch.dtype:
        """The dtype the reader hands tokens stored as `storage` out in. Half-precision tokens travel as stored to
        CUDA (half the bytes to copy, cast there) and to CPU probes that widen float16 a chunk at a time in their
        pooling; everything else arrives in the compute dtype."""
        stored = STORED_HALF.get(storage)
        widened = storage == "float16" and self.compute in (torch.float32, torch.bfloat16)
        return stored if stored is not None and (self.cuda or widened) else self.compute

    def autocast(self):
        """Autocast in the compute dtype on CUDA; on the CPU only the matmuls that read the tokens run in bfloat16
        (`matmul`; autocast there would re-cast every weight on every step)."""
        if not self.cuda or self.compute == torch.float32:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.compute)

    def to_compute(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs onto the device: tokens that travel in their stored half precision (CUDA) are cast there to the
        compute dtype; on the CPU they stay as they came (float16 tokens are widened by the probe that reads them)."""
        x = x.to(self.device, non_blocking=True)
        return x.to(self.compute) if self.cuda and x.dtype in (torch.float16, torch.bfloat16) else x


CPU_FLOAT32 = Precision(device=torch.device("cpu"), compute=torch.float32)  # what a reader computes in by default
