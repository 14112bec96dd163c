import torch

from fer_probe.data.precision import Precision
from fer_probe.data.reader import CacheReader, ClipRef
from fer_probe.probes import AttentiveSettings
from tests.helpers import straightforward_logits

CPU_BFLOAT16 = Precision.resolve("bfloat16", "cpu")


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
    with CacheReader(reference_store, precision=CPU_BFLOAT16) as reader:
        stored = reader.store.tokens[int(reader.rows[0])]  # float16 [K, S, N, D]
        assert torch.equal(reader.video(0), torch.from_numpy(stored))


def test_cpu_float32_probes_get_float16_tokens_as_stored_and_widen_them_themselves(reference_store):
    """Half the bytes through the prefetch thread: the reader hands out the stored float16 and to_compute keeps it;
    the probe's pooling widens it a chunk at a time, to the logits that float32 tokens give."""
    from fer_probe.probes.attentive import AttentiveProbe, DeepAttentiveProbe
    with CacheReader(reference_store) as reader:  # float32 on the CPU by default
        half = reader.view(0, 0)  # [K, N, D]
        assert half.dtype == torch.float16 and reader.transfer_dtype == torch.float16
    assert Precision.resolve("float32", "cpu").to_compute(half) is half
    torch.manual_seed(0)
    settings = AttentiveSettings(num_heads=4)
    width = half.shape[-1]
    for probe in (AttentiveProbe(width, 3, settings), DeepAttentiveProbe(width, 3, settings, depth=4)):
        torch.testing.assert_close(probe(half), probe(half.float()), rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # the straightforward path widens too
            torch.testing.assert_close(straightforward_logits(probe, half), probe(half.float()), rtol=1e-5, atol=1e-5)


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


def compact(tmp_path, dtype="int8"):
    from fer_cache.store.compaction import CompactRequest, compact_store
    from tests.helpers import write_planted_store
    full = write_planted_store(tmp_path / "full.zarr", n_subjects=4, per_class=1)
    out = tmp_path / f"compact-{dtype}.zarr"
    compact_store(CompactRequest(source=str(full), out=str(out), rank=8, dtype=dtype, sample_tokens=400))
    return out


import numpy as np  # noqa: E402


def test_a_compact_store_kept_in_memory_hands_out_the_normalised_coordinates_a_streamed_read_gives(tmp_path):
    """[rstd z, rstd], bit for bit, whether the stored values and their factors were kept (preload) or are read and
    normalised on each read; and the LayerNorm of the tokens they stand for."""
    import numpy as np
    for dtype in ("int8", "float16"):
        store = compact(tmp_path, dtype)
        with CacheReader(store, memory_budget_mb=0) as streamed, CacheReader(store, memory_budget_mb=100) as kept:
            assert not streamed.preload() and kept.preload()
            refs = [ClipRef(v, k, 0) for v in range(len(kept)) for k in range(kept.clips)]
            for ref in refs:
                assert torch.equal(kept.clip(ref), streamed.clip(ref))
            assert torch.equal(kept.video(1), streamed.video(1))
            zn = streamed.clip(refs[0])  # [N, R + 1]
            assert zn.shape == (streamed.num_tokens, streamed.stored_width + 1)
            tokens = streamed.precision.basis.lift(zn)  # [N, D]
            expected = torch.rsqrt(tokens.var(-1, unbiased=False) + 1e-5)
            assert np.allclose(zn[:, -1].numpy(), expected.numpy(), rtol=1e-4)


def test_a_store_kept_in_memory_with_a_non_finite_scale_is_refused_when_it_is_kept(tmp_path):
    import pytest
    import zarr

    from fer_probe.errors import StoreReadError
    store = compact(tmp_path)
    scales = zarr.open_group(str(store), mode="r+")["tokens_scale"]
    values = scales[2]
    values[0, 0, 5] = float("nan")
    scales[2] = values
    with CacheReader(store, memory_budget_mb=100) as reader:
        with pytest.raises(StoreReadError, match=f"{reader.ids[2]} has non-finite"):
            reader.preload()  # before any training


def test_a_streamed_compact_store_is_normalised_in_the_consuming_thread_and_gives_the_kept_values(tmp_path,
                                                                                                 monkeypatch):
    """The reading threads only read; the consumer normalises (torch's threads would otherwise compete with the
    training's), into the recycled buffers, bit for bit what the kept store gives."""
    import threading

    from fer_probe.data.decoding import Decoding
    from fer_probe.data.reader import ReadPolicy
    store = compact(tmp_path)
    threads = set()
    normalised = Decoding.normalised
    monkeypatch.setattr(Decoding, "normalised", lambda self, *a: threads.add(threading.current_thread().name)
                        or normalised(self, *a))
    with CacheReader(store, memory_budget_mb=0, policy=ReadPolicy(recycle=True)) as streamed:
        got = [values.clone() for values in streamed.videos(range(len(streamed)))]
        batch = streamed.read_batch(np.array([0, 2]), np.array([1, 0]), np.array([0, 0]), all_clips=True)
        assert threads == {threading.current_thread().name}  # read_batch alone: in the caller's thread
        pending = [inputs.clone() for inputs in streamed.load_all(  # as TokenSource reads batches ahead
            lambda v: streamed.read_batch(np.array([v]), np.array([0]), np.array([0]), all_clips=True), [0, 2])]
    assert threads == {threading.current_thread().name}
    with CacheReader(store, memory_budget_mb=100) as kept:
        assert kept.preload()
        for v, values in enumerate(got):
            assert torch.equal(values, kept.video(v))
        assert torch.equal(batch[1].view(kept.clips, -1, kept.token_width), kept.view(2, 0))
        assert torch.equal(pending[1][0].view(kept.clips, -1, kept.token_width), kept.view(2, 0))


def test_int8_decodes_the_same_in_the_consuming_thread_as_in_a_reading_thread():
    """Kept int8 stores decode with torch where they are consumed, streamed ones with numpy: the same bits."""
    from fer_probe.data.decoding import Decoding
    rng = np.random.default_rng(0)
    stored = rng.integers(-127, 128, size=(2, 1, 50, 24), dtype=np.int8)
    scale = rng.random((2, 1, 50), dtype=np.float32) * 0.1
    decode = Decoding("int8", torch.float32, None)
    here, there = (decode(stored, scale, torch.empty(2, 1, 50, 24), consumer=c) for c in (True, False))
    assert torch.equal(here, there) and torch.equal(here, torch.from_numpy(stored * scale[..., None]))
