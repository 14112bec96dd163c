import torch

from fer_probe.device import to_compute
from fer_probe.reader import CacheReader, ClipRef


def test_direct_shard_reads_give_what_zarr_gives(reference_store):
    """The reader goes straight to the shard files of a store fer-cache wrote; zarr's own reads agree."""
    with CacheReader(reference_store) as fast, CacheReader(reference_store) as slow:
        assert fast.store.direct is not None
        slow.store.direct = None
        for v in range(len(fast)):
            assert torch.equal(fast.video(v), slow.video(v))
            assert torch.equal(fast.clip(ClipRef(v, 1, 0)), slow.clip(ClipRef(v, 1, 0)))
            assert torch.equal(fast.view(v, 0), slow.view(v, 0))


def test_bfloat16_reads_round_stored_float16_as_a_direct_cast_would(reference_store):
    with CacheReader(reference_store, dtype=torch.bfloat16) as reader:
        stored = reader.store.tokens[int(reader.rows[0])]  # float16 [K, S, N, D]
        assert torch.equal(reader.video(0), torch.from_numpy(stored).to(torch.bfloat16))


def test_tokens_in_stored_half_precision_are_cast_to_the_compute_dtype():
    tokens = torch.randn(2, 3).half()
    assert to_compute(tokens, torch.device("cpu"), torch.float32).dtype == torch.float32
    assert torch.equal(to_compute(tokens, torch.device("cpu"), torch.bfloat16), tokens.to(torch.bfloat16))
    pooled = torch.randn(2, 3)  # float32 inputs (CPU tokens, pooled features) are never cast
    assert to_compute(pooled, torch.device("cpu"), torch.bfloat16) is pooled
