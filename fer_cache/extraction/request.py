"""What an extraction is asked to do (torch-free, so that the command line shows its defaults in the help)."""

from dataclasses import dataclass, fields
from typing import Literal

Device = Literal["auto", "cpu", "cuda"]
Compile = Literal["auto", "on", "off"]


@dataclass(frozen=True, kw_only=True)
class ExtractRequest:
    """What to extract, where and how; the CLI builds one from its options."""
    dataset: str
    encoder: str
    out: str
    device: Device = "auto"
    batch_size: int = 8
    workers: int = 2
    limit: int | None = None
    overwrite: bool = False
    compile: Compile = "auto"  # auto: compiled on CUDA, eager on the CPU; on; off
    rank: int | None = None  # a compact store of this rank (overrides data.yaml's extraction rank)
    preset: str | None = None  # "paper": the reference's training sampling over data.yaml's extraction
    test: bool = False  # the test sampling that goes with the extraction (config.test_extraction): every clip start


def default_of(name: str):
    """The default of an ExtractRequest field (help texts)."""
    return next(f.default for f in fields(ExtractRequest) if f.name == name)
