"""The writer thread: commits videos in order, never non-finite tokens, and raises a failed write as a store error."""

import numpy as np
import pytest

from fer_cache.errors import StoreError
from fer_cache.extraction.writer import Failure, Finished, Writer
from fer_cache.store import schema
from tests.helpers import new_store, tokens


def test_writer_commits_in_order_and_never_non_finite_tokens(tmp_path):
    store = new_store(tmp_path, n=3)
    group = store.group
    writer = Writer(store)
    writer.start()
    good = tokens()
    bad = good.copy()
    bad[0, 0, 1, 2] = np.inf
    writer.put(Finished(index=0, tokens=good, frame_index=np.zeros((2, 4), np.int32), n_frames=5))
    writer.put(Finished(index=1, tokens=bad, frame_index=np.zeros((2, 4), np.int32), n_frames=5, finite=False))
    writer.put(Failure(2, "cannot decode: moov atom not found"))
    writer.close()
    assert group["videos/status"][:].tolist() == [schema.DONE, schema.FAILED, schema.FAILED]
    errors = schema.read_strings(group["videos/error"])
    assert "1 non-finite" in errors[1] and errors[2] == "cannot decode: moov atom not found"


def test_a_failed_write_is_raised_as_a_store_error(tmp_path):
    writer = Writer(new_store(tmp_path, n=1))
    writer.start()
    writer.put(Finished(index=0, tokens=np.zeros((3, 3)), frame_index=np.zeros((2, 4), np.int32),
                        n_frames=5))  # the wrong shape
    with pytest.raises(StoreError, match="writing .* failed .*0 of 1 videos are saved; rerun the same command"):
        writer.close()
