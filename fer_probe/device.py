"""Where and in what precision a probe computes: the device, the dtype tokens are fed in, autocast, and moving
inputs there."""

from contextlib import nullcontext

import torch

from fer_probe.errors import FerProbeError


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise FerProbeError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FerProbeError("device cuda was asked for, but no CUDA GPU is visible; use the CPU")
    return torch.device(name)


def compute_dtype(precision: str, device: str) -> torch.dtype:
    """The dtype tokens are fed in: bfloat16 for the CPU bfloat16 path and for CUDA autocast, else float32."""
    cuda = resolve_device(device).type == "cuda"
    if precision == "float16":
        if not cuda:
            raise FerProbeError("precision float16 (autocast with a gradient scaler) is for CUDA; on the CPU "
                                "use float32 or bfloat16")
        return torch.float16
    if precision == "auto":
        return torch.bfloat16 if cuda else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype):
    """Autocast in the compute dtype on CUDA; on the CPU only the matmuls that read the tokens run in bfloat16
    (token_matmul_dtype; autocast there would re-cast every weight on every step)."""
    if device.type != "cuda" or dtype == torch.float32:
        return nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def token_matmul_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """What the CPU's streamed pooling multiplies float16 tokens in: bfloat16 for a bfloat16 run (a chunk converted
    at a time: the reader hands out the stored float16), else None (float32; CUDA casts on the device)."""
    return torch.bfloat16 if device.type == "cpu" and dtype == torch.bfloat16 else None


def to_compute(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Inputs onto the device: tokens that travel in their stored half precision (CUDA) are cast there to the compute
    dtype; on the CPU they stay as they came (float16 tokens are widened by the probe that reads them)."""
    x = x.to(device, non_blocking=True)
    return x.to(dtype) if device.type != "cpu" and x.dtype in (torch.float16, torch.bfloat16) else x
