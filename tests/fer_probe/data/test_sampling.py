"""Which clips a probe sees: every training video once an epoch, draws that depend on the seed only, concatenated
clips of one view for the paper's training, and the scored inputs of a test video."""

import threading

import numpy as np
import torch

from fer_probe.data.reader import CacheReader, ReadPolicy
from fer_probe.data.sampling import TokenSource
from tests.helpers import write_planted_store


def test_an_epoch_sees_every_video_once_with_seeded_draws(tmp_path):
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2)
    with CacheReader(store) as reader:
        source = TokenSource(reader)
        videos = np.arange(0, len(reader), 2)
        one = list(source.epoch(videos, np.random.default_rng([0, 1]), 5, all_clips=False))
        again = list(source.epoch(videos, np.random.default_rng([0, 1]), 5, all_clips=False))
        assert sorted(np.concatenate([b.videos for b in one]).tolist()) == videos.tolist()
        assert all(torch.equal(a.inputs, b.inputs) and (a.videos == b.videos).all() for a, b in zip(one, again))
        assert one[0].inputs.shape[1:] == (reader.num_tokens, reader.width)  # one clip view: [B, N, D]
        joined = next(source.epoch(videos, np.random.default_rng(0), 5, all_clips=True))
        assert joined.inputs.shape[1:] == (3 * reader.num_tokens, reader.width)  # all clips of a view: [B, K*N, D]
        v = int(joined.videos[0])
        views = [torch.equal(joined.inputs[0], reader.view(v, s).reshape(-1, reader.width)) for s in range(2)]
        assert any(views)  # the clips of one of its views, concatenated in clip order


def test_epochs_read_one_stream_that_starts_on_the_call_and_runs_across_epoch_boundaries(tmp_path):
    """Several epochs from one call: the batches of separate epoch calls with the same rngs, their first batch read
    before anything is asked for (while the trainer creates its probes), and the next epoch's first batch read
    while the trainer still holds the last batch of the current one (no epoch starts by waiting for a read)."""
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2)
    with CacheReader(store) as reader:
        for all_clips in (True, False):
            check_one_stream_of_epochs(reader, all_clips)


def check_one_stream_of_epochs(reader: CacheReader, all_clips: bool) -> None:
    source, videos = TokenSource(reader), np.arange(len(reader))
    alone = [[(b.inputs.clone(), b.videos, b.clips) for b in source.epoch(
        videos, np.random.default_rng([4, e]), 3, all_clips=all_clips)] for e in range(2)]
    read, reads, seen = reader._read, [], threading.Condition()

    def counted(v, *args, **kwargs):
        values = read(v, *args, **kwargs)
        with seen:
            reads.append(v)
            seen.notify_all()
        return values
    reader._read = counted
    try:
        epochs = source.epochs(videos, [np.random.default_rng([4, e]) for e in range(2)], 3, all_clips=all_clips)
        with seen:
            assert seen.wait_for(lambda: len(reads) >= 3, timeout=300)  # the first batch, nothing asked for yet
        first_of_next = alone[1][0][1].tolist()
        together = []
        for e, batches in enumerate(epochs):
            together.append([])
            for b in batches:
                together[-1].append((b.inputs.clone(), b.videos, b.clips))
                if e == 0 and len(together[0]) == len(alone[0]):  # holding the last batch of epoch 0
                    with seen:
                        # each video is read once an epoch: a second read of each is the next epoch's (two reading
                        # threads may interleave the reads of consecutive batches, so their order is not checked)
                        assert seen.wait_for(lambda: all(reads.count(v) == 2 for v in first_of_next), timeout=300)
    finally:
        reader._read = read
    for mine, theirs in zip(together, alone, strict=True):
        for (x, v, k), (x0, v0, k0) in zip(mine, theirs, strict=True):
            assert torch.equal(x, x0) and (v == v0).all() and (k == k0).all()


def test_test_inputs_per_training_mode(tmp_path):
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2)
    with CacheReader(store) as reader:
        source = TokenSource(reader)
        N, D = reader.num_tokens, reader.width
        video = reader.video(0)  # [K, S, N, D]
        assert source.scored_inputs(video, all_clips=False, test_clips="all").shape == (6, N, D)  # every clip view
        middle = source.scored_inputs(video, all_clips=False, test_clips="one")
        assert middle.shape == (1, N, D) and torch.equal(middle[0], reader.video(0)[1, 0])  # middle clip, view 0
        assert source.scored_inputs(video, all_clips=True, test_clips="all").shape == (2, 3 * N, D)  # per view
        each = source.scored_inputs(video, all_clips=True, test_clips="each")  # one pass per clip view, k * S + s
        assert each.shape == (6, N, D) and torch.equal(each[2 * 2 + 1], video[2, 1])
        pooled = TokenSource(reader, torch.from_numpy(reader.mean_pooled()))
        assert pooled.samples_per_epoch(4, all_clips=False) == 4 * 6  # the baselines see every clip view
        assert pooled.scored_inputs(pooled.pooled[0], all_clips=False, test_clips="all").shape == (6, D)


def test_recycled_batches_hold_the_same_tokens_in_reused_memory(tmp_path):
    """The trainer asks for batches whose memory is read into again once it moves on: the same values as fresh
    batches, in two buffers (the one trained on and the one read ahead)."""
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2)
    with CacheReader(store) as reader:
        source = TokenSource(reader)
        videos = np.arange(len(reader))
        for all_clips in (True, False):
            fresh = [b.inputs.clone() for b in source.epoch(videos, np.random.default_rng(3), 2, all_clips=all_clips)]
            recycled, buffers = [], set()
            reader.policy = ReadPolicy(recycle=True)
            for batch in source.epoch(videos, np.random.default_rng(3), 2, all_clips=all_clips):
                recycled.append(batch.inputs.clone())
                buffers.add(batch.inputs.data_ptr())
            assert len(fresh) > 3 and all(torch.equal(a, b) for a, b in zip(fresh, recycled, strict=True))
            assert len(buffers) == 2
            reader.policy = ReadPolicy()


def test_test_passes_read_into_the_memory_that_training_batches_left(tmp_path):
    """Fresh memory costs more than the reads into it (pages faulted in): a test pass after training reads its
    videos into the training batches' buffers (another shape), gives every buffer back, and a second pass needs
    no new memory."""
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2)
    with CacheReader(store, policy=ReadPolicy(recycle=True)) as reader:
        source = TokenSource(reader)
        for _ in source.epoch(np.arange(len(reader)), np.random.default_rng(3), 2, all_clips=True):
            pass
        trained_in = {spare.data_ptr() for spare in reader._spare}

        def test_pass() -> set[int]:
            used = {values.data_ptr() for values in source.test_videos(list(range(len(reader))))}
            assert {spare.data_ptr() for spare in reader._spare} == used  # all given back, the last one too
            return used
        first = test_pass()
        assert len(trained_in) == 2 and trained_in <= first
        assert test_pass() <= first


def test_clip_means_recorded_from_whole_video_reads_complete_with_a_read_of_the_rest(tmp_path):
    """The pooled baselines' features from a test pass over some videos, the others read for them: the same values
    as the baselines' own pass over the store, and no video read twice."""
    store = write_planted_store(tmp_path / "s.zarr", clips=3, views=2)
    with CacheReader(store) as reader:
        source = TokenSource(reader)
        source.record_means()
        for _ in source.test_videos([1, 4, 5]):
            pass
        assert source.measured.tolist() == [i in (1, 4, 5) for i in range(len(reader))]
        read, reads = reader._read, []
        reader._read = lambda v, *args, **kwargs: reads.append(v) or read(v, *args, **kwargs)
        means = source.pooled_means()
        assert sorted(reads) == [i for i in range(len(reader)) if i not in (1, 4, 5)]
        reader._read = read
        assert torch.equal(means, torch.from_numpy(reader.mean_pooled())) and source.measured.all()
