"""The two kinds of input a probe reads from the store, named once: what the data layer hands out and what a probe
declares it consumes (Probe.input_kind)."""

from enum import Enum


class InputKind(str, Enum):
    """The tokens of a clip [B, N, D], or their mean [B, D] (the pooled baselines, standardised by the probe)."""
    TOKENS = "tokens"
    POOLED = "pooled"
