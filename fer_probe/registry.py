"""The probes by name: one line each. A class is imported when a probe of its name is built, so that the command
line lists the names (and starts) without importing torch. A new probe is one subclass of `probes.Probe` and one
line here."""

import importlib

PROBES: dict[str, str] = {  # name -> "module:Class"
    "attentive": "fer_probe.probes:AttentiveProbe",  # the paper's: V-JEPA's attentive classifier
    "attentive-deep": "fer_probe.probes:DeepAttentiveProbe",  # V-JEPA 2's: self-attention blocks first
    "linear": "fer_probe.probes:LinearProbe",  # baseline on mean-pooled tokens
    "mlp": "fer_probe.probes:MLPProbe",  # baseline on mean-pooled tokens
}


def probe_class(name: str) -> type:
    """The class registered under `name`; a ValueError lists the registered names."""
    if name not in PROBES:
        raise ValueError(f"unknown probe '{name}'; use one of: {', '.join(PROBES)}")
    module, _, cls = PROBES[name].partition(":")
    return getattr(importlib.import_module(module), cls)
