"""Preparing a store for an extraction: what a user is told when its disk is full."""


def test_a_full_disk_when_the_store_is_created_asks_for_space_not_for_a_writable_output(tmp_path, monkeypatch):
    """Before: on a tiny file system the advice was 'choose a writable output' (it is writable, it is full)."""
    import errno

    import pytest

    from fer_cache.errors import StoreError
    from fer_cache.store import schema, writing

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(writing, "create_store", full)
    layout = schema.Layout(videos=1, clips=1, views=1, tokens=2, width=4, frames_per_clip=2)
    with pytest.raises(StoreError, match="No space left on device; free space or choose another output"):
        writing.prepare_for_extraction(str(tmp_path / "s.zarr"), layout, [], attrs={}, overwrite=False)
