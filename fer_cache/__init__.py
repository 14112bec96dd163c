"""fer_cache: decode face videos once, encode them with a frozen V-JEPA encoder, store the tokens in Zarr."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fer-jepa")  # the one place: pyproject.toml
except PackageNotFoundError:  # run from a source tree that was not installed (e.g. make bench-gpu on a bare GPU box)
    __version__ = "0+unknown"
