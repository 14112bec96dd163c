"""Stage 1's pipeline: `run_extraction(config, ExtractRequest(...))` encodes a dataset into a store."""

from fer_cache.extraction.pipeline import ExtractRequest, run_extraction
from fer_cache.extraction.summary import ExtractSummary

__all__ = ["ExtractRequest", "ExtractSummary", "run_extraction"]
