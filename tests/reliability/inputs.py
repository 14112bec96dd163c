"""A catalogue of valid and broken inputs, written into a RAVDESS-named dataset folder."""

from pathlib import Path

import av
import numpy as np

from fer_cache.inputs.datasets.synthetic import write_video


def encode(path: Path, codec: str, pix_fmt: str, frames: list[np.ndarray], fmt: str = "rgb24",
           options: dict | None = None) -> None:
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def ramp(height: int, width: int, n: int, channels: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return [np.clip(rng.normal(20 + 9 * i, 10, shape), 0, 255).astype(np.uint8) for i in range(n)]


def audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def name(emotion: int, repetition: int, actor: int, ext: str = "mp4") -> str:
    return f"02-01-{emotion:02d}-01-01-{repetition:02d}-{actor:02d}.{ext}"


def build_catalogue(root: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Write the catalogue; returns (valid id -> kind, broken id -> kind, unparseable path -> kind)."""
    valid, broken, unparseable = {}, {}, {}
    actor = root / "Actor_01"
    odd = root / "Äctor 02 (spaces)"
    for folder in (actor, odd):
        folder.mkdir(parents=True)

    def add_valid(rel: str, kind: str, write) -> None:
        write(root / rel)
        valid[Path(rel).stem] = kind

    add_valid(f"Actor_01/{name(3, 1, 1)}", "normal", lambda p: write_video(p, ramp(48, 64, 24)))
    add_valid(f"Actor_01/{name(3, 2, 1)}", "one frame", lambda p: write_video(p, ramp(48, 64, 1)))
    add_valid(f"Actor_01/{name(4, 1, 1)}", "very short", lambda p: write_video(p, ramp(48, 64, 3)))
    add_valid(f"Actor_01/{name(4, 2, 1, 'mkv')}", "odd size", lambda p: encode(p, "ffv1", "yuv444p", ramp(61, 97, 12)))
    add_valid(f"Actor_01/{name(5, 1, 1)}", "portrait", lambda p: write_video(p, ramp(96, 48, 12)))
    add_valid(f"Actor_01/{name(5, 2, 1, 'mkv')}", "grayscale",
              lambda p: encode(p, "ffv1", "gray", ramp(48, 48, 12, channels=1), fmt="gray"))
    add_valid(f"Actor_01/{name(6, 1, 1, 'avi')}", "mpeg4 in avi",
              lambda p: encode(p, "mpeg4", "yuv420p", ramp(48, 64, 12)))
    add_valid(f"Actor_01/{name(6, 2, 1, 'mov')}", "mjpeg in mov",
              lambda p: encode(p, "mjpeg", "yuvj420p", ramp(48, 64, 12)))
    add_valid(f"Actor_01/{name(7, 1, 1, 'webm')}", "vp9 in webm",
              lambda p: encode(p, "libvpx-vp9", "yuv420p", ramp(48, 64, 12)))
    add_valid(f"{odd.name}/{name(7, 2, 2)}", "path with spaces and non-ASCII",
              lambda p: write_video(p, ramp(48, 64, 12)))
    add_valid(f"Actor_01/{name(1, 1, 1)}", "tiny frames (upscaled)", lambda p: write_video(p, ramp(16, 16, 12)))

    def add_broken(rel: str, kind: str, write) -> None:
        write(root / rel)
        broken[Path(rel).stem] = kind

    add_broken(f"Actor_01/{name(1, 2, 1)}", "empty file", lambda p: p.write_bytes(b""))
    add_broken(f"Actor_01/{name(8, 1, 1)}", "random bytes",
               lambda p: p.write_bytes(np.random.default_rng(3).bytes(20000)))
    add_broken(f"Actor_01/{name(8, 2, 1)}", "text with a video extension", lambda p: p.write_text("hello\n" * 300))
    add_broken(f"{odd.name}/{name(3, 1, 2)}", "audio only", audio_only)

    def truncated(path: Path) -> None:
        encode(path, "libx264", "yuv420p", ramp(48, 64, 30), options={"movflags": "faststart"})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    add_broken(f"{odd.name}/{name(3, 2, 2)}", "truncated (faststart)", truncated)

    def truncated_tail(path: Path) -> None:
        write_video(path, ramp(48, 64, 30))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    add_broken(f"{odd.name}/{name(4, 1, 2)}", "truncated (index at the end)", truncated_tail)

    (actor / "not-a-ravdess-name.mp4").write_bytes(b"x")
    unparseable["Actor_01/not-a-ravdess-name.mp4"] = "name does not parse"
    (actor / "02-01-09-01-01-01-01.mp4").write_bytes(b"x")
    unparseable["Actor_01/02-01-09-01-01-01-01.mp4"] = "emotion out of range"
    (actor / name(2, 1, 1)).mkdir()
    unparseable[f"Actor_01/{name(2, 1, 1)}"] = "folder named like a video"
    (actor / name(2, 2, 1)).symlink_to(root / "nowhere.mp4")
    unparseable[f"Actor_01/{name(2, 2, 1)}"] = "dangling link"
    (actor / "notes.txt").write_text("not a video, ignored")
    return valid, broken, unparseable
