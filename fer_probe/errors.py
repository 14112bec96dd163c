"""One error family for stage 2: the CLI prints their message in one line and exits 1.

Messages say what to do in library terms; the CLI adds the flag that does it (cli.HINTS)."""


class FerProbeError(Exception):
    """A user-facing problem; the message says what to do."""


class StoreReadError(FerProbeError):
    pass


class IncompleteStoreError(StoreReadError):
    """The store has pending or failed videos."""


class RunDirectoryError(FerProbeError):
    """The run directory is not empty (or not a folder)."""


class FoldsError(FerProbeError):
    pass


class NoSubjectsError(FoldsError):
    """Subject folds were asked of a store without subject ids."""


class MappingError(FerProbeError):
    pass
