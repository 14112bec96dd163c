"""torch.compile for the encoder: on by default on CUDA (static shapes: batches are always full), off on the CPU.
A compile failure falls back to the eager encoder and says why, instead of stopping a long extraction."""

import torch

from fer_cache.errors import ConfigError

MODES = ("auto", "on", "off")


class CompiledOrEager:
    """Calls the compiled encoder; if compiling fails on the first batch, the eager one from then on."""

    def __init__(self, model, compiled):
        self.model, self.compiled = model, compiled
        self.fallback: str | None = None

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(video)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly and report it
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                self.fallback = f"torch.compile failed ({type(exc).__name__}: {reason}); ran the eager encoder"
                self.compiled = None
        return self.model(video)


def compile_for(model, device: torch.device, mode: str) -> tuple[CompiledOrEager, str | None]:
    """(callable encoder, a note on what was chosen and why, or None when eager on the CPU as expected)."""
    if mode not in MODES:
        raise ConfigError(f"compile must be one of {', '.join(MODES)}, got '{mode}'")
    wanted = mode == "on" or (mode == "auto" and device.type == "cuda")
    if not wanted:
        return CompiledOrEager(model, None), None
    if not hasattr(torch, "compile"):
        return CompiledOrEager(model, None), "torch.compile is not available in this torch; ran the eager encoder"
    return CompiledOrEager(model, torch.compile(model, dynamic=False)), "compiled encoder (torch.compile)"
