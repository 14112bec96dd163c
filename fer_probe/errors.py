"""One error family for stage 2: the CLI prints their message in one line and exits 1."""


class FerProbeError(Exception):
    """A user-facing problem; the message says what to do."""


class StoreReadError(FerProbeError):
    pass


class FoldsError(FerProbeError):
    pass


class MappingError(FerProbeError):
    pass
