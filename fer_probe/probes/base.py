"""What every probe is: the `Probe` protocol, the kind of input it reads, its settings, and the shared token pass
through which probes of one kind pool together (forward_many).

Axes: B clips, N tokens, D width, C classes, P probes.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn as nn

from fer_probe.data.inputs import InputKind
from fer_probe.data.precision import CPU_FLOAT32, Precision
from fer_probe.errors import FerProbeError


@dataclass(frozen=True)
class NoSettings:
    """A probe without settings of its own."""


class Probe(nn.Module, ABC):
    """A probe pools its inputs to [B, D] and classifies that to [B, C]. `Settings` (a frozen dataclass) is
    everything that builds it besides width and classes: saved with its weights, read back by the report and by
    embed-plot. A probe that can pool together with others of its kind returns their shared-pass class from
    `shared_pass` and implements `forward_shared` there."""

    input_kind: ClassVar[InputKind] = InputKind.TOKENS
    Settings: ClassVar[type] = NoSettings
    takes_float16: ClassVar[bool] = False  # CPU tokens stored in float16 come as they are (else widened to float32)

    @classmethod
    def settings_from(cls, values: Mapping[str, Any] | Any) -> Any:
        """This probe's settings from a mapping or an object with the same names (a ProbeConfig); names that are
        not settings of this probe are ignored, a missing one takes the setting's default."""
        get = values.get if isinstance(values, Mapping) else (lambda name, default: getattr(values, name, default))
        given = {f.name: get(f.name, None) for f in fields(cls.Settings)}
        return cls.Settings(**{name: value for name, value in given.items() if value is not None})

    @classmethod
    def make_settings(cls, **values) -> Any:
        """Settings from keyword arguments, every name checked: a name this probe does not have is refused."""
        known = {f.name for f in fields(cls.Settings)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FerProbeError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}; it has: "
                                f"{', '.join(sorted(known)) or 'none'}")
        return cls.Settings(**values)

    @classmethod
    @abstractmethod
    def build(cls, dim: int, num_classes: int, settings) -> "Probe":
        """The probe for inputs of width `dim`, with PyTorch's default initialisation or its own."""

    @classmethod
    def create(cls, dim: int, num_classes: int, settings, *, device: torch.device) -> "Probe":
        """A probe with its initial weights on `device` (the global RNG is seeded by the caller)."""
        return cls.build(dim, num_classes, settings).to(device)

    @property
    @abstractmethod
    def settings(self):
        """The settings it was built with."""

    def settings_dict(self) -> dict:
        return asdict(self.settings)

    @abstractmethod
    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> one vector per clip [B, D]."""

    @abstractmethod
    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, D] -> logits [B, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(x))

    def fit_standardisation(self, features: torch.Tensor) -> None:
        """Pooled probes standardise their inputs with the training videos' statistics; others need nothing."""

    def shared_pass(self) -> type["Probe"] | None:
        """The class whose forward_shared pools this probe in one pass with others, or None (it runs alone)."""
        return None

    @classmethod
    def forward_shared(cls, probes: list["Probe"], x: torch.Tensor, rows: list[list[int]] | None, *,
                       precision: Precision) -> list[torch.Tensor]:
        """Logits of several probes over one traversal of the inputs x [B, ...] -> P x [B_p, C] (tokens as
        `precision` holds them: coordinates on its basis for a compact store). This default runs each probe alone;
        a probe kind that can share the traversal overrides it (AttentiveProbe)."""
        return [p(x if rows is None else x[r]) for p, r in zip(probes, rows or [None] * len(probes))]


def forward_many(probes: list[Probe], x: torch.Tensor, rows: list[list[int]] | None = None, *,
                 precision: Precision = CPU_FLOAT32) -> list[torch.Tensor]:
    """Logits of several probes on the same inputs [B, ...] -> P x [B_p, C], each on its rows of the batch (all rows
    by default). Probes with a shared pass share it (one traversal of the tokens for all of them); float16 CPU tokens
    are multiplied in Precision.matmul there. Tokens of a compact store (coordinates on Precision.basis) go to the
    shared pass as they are, and are lifted to D once for the probes that need every token in D."""
    out: list[torch.Tensor | None] = [None] * len(probes)
    groups: dict[type, list[int]] = {}
    for i, probe in enumerate(probes):
        kind = probe.shared_pass()
        if kind is not None:
            groups.setdefault(kind, []).append(i)
    for kind, members in groups.items():
        logits = kind.forward_shared([probes[i] for i in members], x,
                                     [rows[i] for i in members] if rows is not None else None, precision=precision)
        for i, lg in zip(members, logits):
            out[i] = lg
    widened = None  # CPU float16 tokens as float32, for the probes that do not take them (made once)
    lifted = None  # coordinates lifted to tokens (made once)
    for i, probe in enumerate(probes):
        if out[i] is None:
            inputs = x
            if precision.basis is not None and probe.input_kind == InputKind.TOKENS:
                inputs = lifted = precision.basis.lift(x) if lifted is None else lifted
            if x.dtype == torch.float16 and x.device.type == "cpu" and not probe.takes_float16:
                inputs = widened = x.float() if widened is None else widened
            out[i] = probe(inputs if rows is None else inputs[rows[i]])
    return out
