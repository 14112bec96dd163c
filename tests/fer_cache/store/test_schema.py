"""The store format: the fingerprint, token encodings and the arrays of a layout."""

import numpy as np
import pytest

from fer_cache.store import schema


def test_fingerprint_is_canonical_and_its_changes_are_named():
    a = schema.fingerprint({"x": 1, "y": [1, 2]}, {"s": 1}, {"dtype": "float16"}, token_grid=[1, 2, 3])
    b = schema.fingerprint({"y": [1, 2], "x": 1}, {"s": 1}, {"dtype": "float16"}, token_grid=[1, 2, 3])
    assert a == b
    assert a != schema.fingerprint({"x": 2, "y": [1, 2]}, {"s": 1}, {"dtype": "float16"}, token_grid=[1, 2, 3])
    old = {"encoder": {"resolution": 384}, "sampling": {"clips_per_video": 4}, "storage": {}, "token_grid": [8, 24, 24]}
    new = {"encoder": {"resolution": 384}, "sampling": {"clips_per_video": 8}, "storage": {}, "token_grid": [8, 24, 24]}
    assert schema.fingerprint_changes(old, new) == ["sampling.clips_per_video 4 -> 8"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "float32"])
def test_token_encodings_round_trip_within_their_precision(dtype):
    values = np.random.default_rng(1).standard_normal((2, 3, 5, 8)).astype(np.float32)
    stored, scale = schema.encode_tokens(values, dtype)
    assert stored.dtype == np.dtype(schema.STORED_DTYPES[dtype])
    back = schema.decode_tokens(stored, dtype, scale)
    tolerance = {"float16": 2e-3, "bfloat16": 8e-3, "int8": 8e-3, "float32": 0}[dtype]
    assert np.abs(back - values).max() <= tolerance * np.abs(values).max()


def test_array_specs_chunk_one_clip_view_and_shard_one_video():
    specs = schema.array_specs(schema.Layout(videos=4, clips=3, views=2, tokens=5, width=8, frames_per_clip=6,
                                             dtype="int8"))
    assert specs["tokens"].chunks == (1, 1, 1, 5, 8) and specs["tokens"].shards == (1, 3, 2, 5, 8)
    assert specs["tokens_scale"].shape == (4, 3, 2, 5) and specs["clips/frame_index"].chunks == (1, 3, 6)
    assert specs["videos/status"].fill_value == schema.PENDING
