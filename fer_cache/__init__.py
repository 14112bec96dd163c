"""fer_cache: decode face videos once, encode them with a frozen V-JEPA encoder, store the tokens in Zarr."""

__version__ = "0.1.0"
