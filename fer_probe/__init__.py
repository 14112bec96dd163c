"""fer_probe: train and evaluate probes on cached V-JEPA tokens; never decodes video or runs the encoder."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fer-jepa")  # the one place: pyproject.toml
except PackageNotFoundError:  # run from a source tree that was not installed (e.g. make bench-gpu on a bare GPU box)
    __version__ = "0+unknown"
