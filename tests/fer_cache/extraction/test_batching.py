"""The batch encoder: full batches across video boundaries, videos assembled in clip order, non-finite clips caught."""

import numpy as np
import torch

from fer_cache.extraction.batching import Advance, BatchEncoder, DecodedVideo
from fer_cache.extraction.staging import finite_rows
from fer_cache.extraction.writer import Failure, Finished
from fer_cache.store import shards


class Recorder:
    """Stands in for the writer thread."""

    def __init__(self):
        self.jobs = []

    def put(self, job):
        self.jobs.append(job)

    @staticmethod
    def buffer(shape, dtype):  # the batcher fills the buffers the writer hands out, laid out as shards go to disk
        return shards.chunked_empty(shape, dtype)


class ClipEcho(torch.nn.Module):
    """tokens [B, 2, 3]: each clip's first pixel value, so that every token says which clip it came from; the batch
    sizes it saw are kept."""

    def __init__(self, poison: float | None = None):
        super().__init__()
        self.batches, self.poison = [], poison

    def forward(self, video):
        self.batches.append(len(video))
        marks = video[:, 0, 0, 0, 0].float()  # [B]
        tokens = marks[:, None, None].expand(-1, 2, 3).clone()  # [B, N, D]
        if self.poison is not None:
            tokens[marks == self.poison] = float("nan")
        return tokens


def decoded(index: int, clips: int, views: int, first: int) -> DecodedVideo:
    values = torch.zeros((clips, views, 2, 4, 4, 3), dtype=torch.uint8)
    for k in range(clips):
        for s in range(views):
            values[k, s] = first + k * views + s  # every clip view marked with its own number
    return DecodedVideo(index=index, clips=values, frame_index=np.zeros((clips, 2), np.int32), n_frames=30)


def run(model, videos, batch_size=4):
    writer, steps = Recorder(), []
    encoder = BatchEncoder(model, writer, batch_size=batch_size, device=torch.device("cpu"),
                           out_dtype=torch.float16, prepare=lambda video: video, on_advance=steps.append)
    for video in videos:
        encoder.add(video)
    encoder.flush()
    return writer.jobs, steps, encoder


def test_videos_are_assembled_in_clip_order_from_full_batches():
    model = ClipEcho()
    jobs, steps, encoder = run(model, [decoded(0, 3, 1, 10), decoded(5, 2, 2, 20), DecodedVideo.failure(7, "broken"),
                                       decoded(9, 1, 1, 30)])
    assert set(model.batches) == {4}  # the last, partial batch is padded to full size
    finished = {job.index: job for job in jobs if isinstance(job, Finished)}
    assert [job.index for job in jobs if isinstance(job, Failure)] == [7]
    assert finished[0].tokens.shape == (3, 1, 2, 3) and finished[5].tokens.shape == (2, 2, 2, 3)
    assert finished[0].tokens[:, 0, 0, 0].tolist() == [10, 11, 12]
    assert finished[5].tokens[:, :, 0, 0].tolist() == [[20, 21], [22, 23]]
    assert all(job.finite for job in finished.values()) and finished[0].tokens.ctypes.data % 4096 == 0
    assert (encoder.videos, encoder.clips) == (3, 8)
    assert sum(s.videos for s in steps) == 4 and sum(s.failed for s in steps) == 1 and Advance().videos == 0


def test_a_non_finite_clip_marks_its_video_and_no_other():
    jobs, _, _ = run(ClipEcho(poison=21), [decoded(0, 2, 1, 10), decoded(1, 2, 1, 20)])
    assert {job.index: job.finite for job in jobs} == {0: True, 1: False}
    rows = np.ones((3, 4, 5), np.float16)
    rows[1, 2, 3] = np.inf
    rows[2, 0, 0] = np.nan
    assert finite_rows(rows).tolist() == [True, False, False]
    assert finite_rows(rows.astype(np.float32)).tolist() == [True, False, False]
