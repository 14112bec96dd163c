"""The probes: the protocol every probe follows (base), the attentive probes and their fast exact attention, the
pooled baselines, and the registry of names. `from fer_probe.probes import load_reference_classifier` is the
public entry point (DESIGN section 8); torch is imported only when one of these names is first used, so that the
torch-free command line can read the registry."""

import importlib

_EXPORTS = {
    "Probe": "base", "forward_many": "base",
    "AttentiveProbe": "attentive", "DeepAttentiveProbe": "attentive", "AttentiveSettings": "attentive",
    "load_reference_classifier": "attentive",
    "LinearProbe": "pooled", "MLPProbe": "pooled",
    "PROBES": "registry", "registered": "registry", "build_probe": "registry",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fer_probe.probes' has no attribute '{name}'")
    return getattr(importlib.import_module(f"fer_probe.probes.{_EXPORTS[name]}"), name)
