"""fer_probe: train and evaluate probes on cached V-JEPA tokens; never decodes video or runs the encoder."""

from fer_cache import __version__  # the one version string: pyproject.toml, read once by fer_cache

__all__ = ["__version__"]
