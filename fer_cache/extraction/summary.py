"""What an extraction reports: the outcome for the videos it was asked for, and the notes on what it decided on its
own (a grown dataset, repairs, a frame count that replaced another, short videos, one class)."""

from dataclasses import dataclass, field

from fer_cache.config import Config
from fer_cache.encoder_entry import EncoderConfig
from fer_cache.inputs.datasets import ScanResult
from fer_cache.store import Store, schema
from fer_cache.store.writing import Reconciled

INTERRUPTED = 130  # exit status after a clean stop on Ctrl-C or SIGTERM (128 + SIGINT)


@dataclass(kw_only=True)
class ExtractSummary:
    store: str
    total: int
    done: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video id, reason) from the store
    scan_errors: list[tuple[str, str]] = field(default_factory=list)  # files that never became videos
    encoded_now: int = 0  # videos encoded by this run (resumed ones excluded)
    clips_now: int = 0
    seconds: float = 0.0
    pending: int = 0  # videos of this dataset still to encode
    stopped: bool = False  # a signal asked for a clean stop
    notes: list[str] = field(default_factory=list)  # what the run decided on its own: growth, repairs, fallbacks
    rank: int = 0  # under torchrun, only rank 0 prints the summary (its counts are every rank's)

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return INTERRUPTED
        return 3 if (self.failed or self.scan_errors or self.pending) else 0


def summarise(store: Store, rows: list[int], *, scan: ScanResult, encoded: int, clips: int, seconds: float,
              stopped: bool) -> ExtractSummary:
    """The outcome for the videos this run was asked for (a store may hold more)."""
    status = store.group["videos/status"][:]
    errors, ids = store.strings("videos/error"), store.strings("videos/id")
    failed = [(ids[r], errors[r]) for r in rows if status[r] == schema.FAILED]
    notes = [n for n in (schema.padding_note(*schema.padded_videos(store.group, rows)),) if n]
    done = int(sum(status[r] == schema.DONE for r in rows))
    if not encoded and done == len(rows):  # done means written and committed, not checked since
        notes.append(f"nothing to encode: every video is marked done; `fer-cache verify {store.location}` checks "
                     "the stored values (`--repair` marks damaged videos for this command to encode again)")
    return ExtractSummary(store=store.location, total=len(rows), done=done, failed=failed,
                          scan_errors=list(scan.errors), encoded_now=encoded, clips_now=clips, seconds=seconds,
                          pending=int(sum(status[r] == schema.PENDING for r in rows)), stopped=stopped,
                          notes=notes)


def run_notes(config: Config, encoder_cfg: EncoderConfig, *, scan: ScanResult, reconciled: Reconciled) -> list[str]:
    """What the run decided on its own that its results depend on."""
    notes = reconciliation_notes(reconciled) + frames_notes(config, encoder_cfg)
    labels = sorted({v.label_name for v in scan.videos})
    if len(labels) < 2:
        notes.append(f"every video carries the label {', '.join(labels)}: fer-probe cv refuses a store of one "
                     "class (a classifier needs at least 2)")
    return notes


def frames_notes(config: Config, encoder_cfg) -> list[str]:
    """An encoder entry's frames_per_clip wins over the extraction's: say so, or a reader thinks the other was used."""
    entry, extraction = encoder_cfg.frames_per_clip, config.extraction.frames_per_clip
    if entry is None or entry == extraction:
        return []
    return [f"frames_per_clip {entry} of encoder '{encoder_cfg.name}' ({config.path} line {encoder_cfg.line}) replaces "
            f"the extraction's {extraction}: clips of {entry} frames"]


def reconciliation_notes(reconciled: Reconciled) -> list[str]:
    notes = []
    if reconciled.added:
        notes.append(f"the dataset grew: {reconciled.added} new videos appended to the store (encoded ones kept)")
    if reconciled.relabelled:
        notes.append(f"labels, subjects or paths of {reconciled.relabelled} videos updated to the dataset's")
    if reconciled.repaired:
        notes.append(f"{reconciled.repaired} videos marked done had lost their token chunks: encoded again")
    return notes
