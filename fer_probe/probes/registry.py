"""The probes by name: one line each. A class is imported when a probe of its name is built, so that the command
line lists the names (and starts) without importing torch. A new probe is one subclass of `probes.base.Probe` and
one line here."""

import importlib

from fer_probe.errors import FerProbeError

PROBES: dict[str, str] = {  # name -> "module:Class"
    "attentive": "fer_probe.probes.attentive:AttentiveProbe",  # the paper's: V-JEPA's attentive classifier
    "attentive-deep": "fer_probe.probes.attentive:DeepAttentiveProbe",  # V-JEPA 2's: self-attention blocks first
    "linear": "fer_probe.probes.pooled:LinearProbe",  # baseline on mean-pooled tokens
    "mlp": "fer_probe.probes.pooled:MLPProbe",  # baseline on mean-pooled tokens
}


def probe_class(name: str) -> type:
    """The class registered under `name`; a ValueError lists the registered names."""
    if name not in PROBES:
        raise ValueError(f"unknown probe '{name}'; use one of: {', '.join(PROBES)}")
    module, _, cls = PROBES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def registered(name: str) -> type:
    """The Probe class of a registered name; an unknown name is the user's mistake, in one line."""
    try:
        return probe_class(name)
    except ValueError as exc:
        raise FerProbeError(str(exc)) from None


def build_probe(name: str, dim: int, num_classes: int, **settings):
    """A probe of a registered name with PyTorch's default initialisation; settings by keyword (Probe.Settings)."""
    cls = registered(name)
    return cls.build(dim, num_classes, cls.make_settings(**settings))
