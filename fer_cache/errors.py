"""One error family for stage 1: the CLI prints their message in one line and exits 1."""

import errno


class FerCacheError(Exception):
    """A user-facing problem: bad input, bad config, a store that does not match. Message says what to do."""


class ConfigError(FerCacheError):
    pass


class DatasetError(FerCacheError):
    pass


class CheckpointError(FerCacheError):
    pass


class DecodeError(FerCacheError):
    pass


class StoreError(FerCacheError):
    pass


class StoreMismatchError(StoreError):
    pass


def no_space(exc: BaseException) -> bool:
    """A write that failed for lack of room (a full disk, a quota, a file-size limit), not for lack of rights."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
