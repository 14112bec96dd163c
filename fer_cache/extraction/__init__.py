"""Stage 1's pipeline: `pipeline.run_extraction(config, request.ExtractRequest(...))` encodes a dataset into a
store. (Nothing is imported here, so that `request` can be read without torch.)"""
