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


def test_cpu_bfloat16_runs_get_float16_tokens_as_stored(reference_store):
    """Their pooling converts a chunk at a time (test_attention): no bfloat16 copy of every read in the reader."""
    with CacheReader(reference_store, dtype=torch.bfloat16) as reader:
        stored = reader.store.tokens[int(reader.rows[0])]  # float16 [K, S, N, D]
        assert torch.equal(reader.video(0), torch.from_numpy(stored))


def test_cpu_float32_probes_get_float16_tokens_as_stored_and_widen_them_themselves(reference_store):
    """Half the bytes through the prefetch thread: the reader hands out the stored float16 and to_compute keeps it;
    the probe's pooling widens it a chunk at a time, to the logits that float32 tokens give."""
    from fer_probe.probes import AttentiveProbe, DeepAttentiveProbe
    with CacheReader(reference_store, dtype=torch.float32) as reader:
        half = reader.view(0, 0)  # [K, N, D]
        assert half.dtype == torch.float16
    assert to_compute(half, torch.device("cpu"), torch.float32) is half
    torch.manual_seed(0)
    for probe in (AttentiveProbe(half.shape[-1], 3, num_heads=4), DeepAttentiveProbe(half.shape[-1], 3, num_heads=4)):
        torch.testing.assert_close(probe(half), probe(half.float()), rtol=1e-5, atol=1e-5)
        probe.fast = False  # the straightforward path widens too
        torch.testing.assert_close(probe(half), probe(half.float()), rtol=1e-5, atol=1e-5)


def test_tokens_in_stored_half_precision_are_cast_to_the_compute_dtype():
    tokens = torch.randn(2, 3).half()
    assert torch.equal(to_compute(tokens, torch.device("cpu"), torch.bfloat16), tokens)  # converted by the pooling
    pooled = torch.randn(2, 3)  # float32 inputs (CPU tokens, pooled features) are never cast
    assert to_compute(pooled, torch.device("cpu"), torch.bfloat16) is pooled


def test_reads_into_a_given_buffer_equal_plain_reads(reference_store):
    """Straight from the shard files and through zarr's codecs (a store the direct reader does not cover)."""
    with CacheReader(reference_store) as reader:
        for direct in (True, False):
            if not direct:
                reader.store.direct = None
            expected = reader.view(1, 0)
            buffer = torch.empty_like(expected)
            assert reader.view(1, 0, out=buffer) is buffer and torch.equal(buffer, expected)
            video = torch.empty_like(reader.video(1))
            assert torch.equal(reader.video(1, out=video), reader.video(1))
