"""`fer-cache extract` that signals itself right after committing N videos: the reliability tests' deterministic
interruption points, patched in from here so that the package carries no test hook.

python -m tests.extract_with_fault N:KILL|N:TERM|N:INT extract --dataset ... (from the repository's root)
"""

import os
import signal
import sys

from fer_cache.extraction import writer

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def signal_after(count: int, sig: signal.Signals) -> None:
    commit = writer.Writer.commit

    def commit_then_signal(self, job) -> None:
        commit(self, job)
        if self.committed == count:
            os.kill(os.getpid(), sig)
    writer.Writer.commit = commit_then_signal


if __name__ == "__main__":
    count, name = sys.argv[1].split(":")
    signal_after(int(count), SIGNALS[name])
    from fer_cache.cli import main

    sys.argv = ["fer-cache", *sys.argv[2:]]
    main()
