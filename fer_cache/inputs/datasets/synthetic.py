"""A synthetic face-video dataset for the demo and the tests, RAVDESS-named so the RAVDESS adapter reads it.

Cartoon faces: per-actor head shape, skin tone, background and position vary moderately; the expression
(mouth curve and opening, brows, eye opening, head motion) unfolds over time and differs per emotion, boldly,
so that random-weight encoder features can separate emotions across held-out actors.
"""

from pathlib import Path

import av
import numpy as np

# emotion code (RAVDESS) -> name; the six emotions shared with CREMA-D
DEMO_EMOTIONS = {1: "neutral", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust"}

# per emotion at full intensity: mouth curve (+ smile), mouth opening, brow raise, brow slant (+ furrow),
# eye opening, head motion kind
EXPRESSIONS = {
    "neutral": dict(curve=0.0, open=0.0, brow=0.0, slant=0.0, eye=1.0, motion="still"),
    "happy": dict(curve=1.0, open=0.35, brow=0.2, slant=0.0, eye=0.55, motion="nod"),
    "sad": dict(curve=-0.9, open=0.0, brow=0.3, slant=-0.9, eye=0.45, motion="drop"),
    "angry": dict(curve=-0.3, open=0.5, brow=-0.5, slant=1.0, eye=0.6, motion="shake"),
    "fearful": dict(curve=-0.2, open=1.0, brow=1.0, slant=-0.4, eye=1.6, motion="tremble"),
    "disgust": dict(curve=-0.6, open=0.2, brow=-0.3, slant=0.5, eye=0.5, motion="tilt"),
}


def actor_style(actor: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, actor])
    return dict(
        skin=np.array([220, 180, 150]) * rng.uniform(0.8, 1.05) + rng.uniform(-12, 12, 3),
        background=np.array([110, 120, 130]) + rng.uniform(-30, 30, 3),
        head_rx=rng.uniform(0.30, 0.36), head_ry=rng.uniform(0.38, 0.44),
        cx=0.5 + rng.uniform(-0.04, 0.04), cy=0.5 + rng.uniform(-0.03, 0.03),
        eye_gap=rng.uniform(0.11, 0.14), mouth_width=rng.uniform(0.12, 0.16),
    )


def head_offset(motion: str, a: float, t: float, *, rng: np.random.Generator) -> tuple[float, float, float]:
    """(dx, dy, tilt) in face units for a motion kind at intensity a and time t in [0, 1]."""
    if motion == "nod":
        return 0.0, 0.05 * a * np.sin(2 * np.pi * 2 * t), 0.0
    if motion == "drop":
        return 0.0, 0.07 * a, 0.0
    if motion == "shake":
        return 0.06 * a * np.sin(2 * np.pi * 3 * t), 0.0, 0.0
    if motion == "tremble":
        return 0.015 * a * rng.standard_normal(), -0.04 * a + 0.015 * a * rng.standard_normal(), 0.0
    if motion == "tilt":
        return -0.04 * a, 0.0, 0.35 * a
    return 0.0, 0.0, 0.0


def draw_face(size: int, style: dict, emotion: str, *, a: float, t: float, rng: np.random.Generator) -> np.ndarray:
    """One RGB frame [size, size, 3] uint8 of a face at expression intensity a in [0, 1]."""
    e = EXPRESSIONS[emotion]
    yy, xx = np.mgrid[0:size, 0:size] / size  # [H, W] in face units
    dx, dy, tilt = head_offset(e["motion"], a, t, rng=rng)
    cx, cy = style["cx"] + dx, style["cy"] + dy
    # rotate coordinates around the head centre for a tilt
    u = (xx - cx) * np.cos(tilt) + (yy - cy) * np.sin(tilt)
    v = -(xx - cx) * np.sin(tilt) + (yy - cy) * np.cos(tilt)
    img = np.empty((size, size, 3), dtype=np.float64)
    img[:] = style["background"]
    head = (u / style["head_rx"]) ** 2 + (v / style["head_ry"]) ** 2 <= 1.0
    img[head] = style["skin"]
    dark = np.array([30, 25, 25])
    # eyes: ellipses whose height follows the eye opening
    eye_open = 1.0 + (e["eye"] - 1.0) * a
    for side in (-1, 1):
        ex, ey = side * style["eye_gap"], -0.08
        mask = ((u - ex) / 0.055) ** 2 + ((v - ey) / (0.035 * eye_open + 1e-3)) ** 2 <= 1.0
        img[mask] = np.array([250, 250, 250])
        pupil = ((u - ex) / 0.022) ** 2 + ((v - ey) / (0.022 * min(eye_open, 1.2) + 1e-3)) ** 2 <= 1.0
        img[pupil] = dark
        # brows: thick segments, raised and slanted (positive slant: inner ends down, a furrow)
        brow_y = ey - 0.075 - 0.06 * e["brow"] * a
        slope = 0.9 * e["slant"] * a * side  # inner end is towards u = 0
        along = u - ex
        line_y = brow_y - slope * along
        brow = (np.abs(along) <= 0.07) & (np.abs(v - line_y) <= 0.018)
        img[brow] = dark
    # mouth: a thick parabola (curve) above an open ellipse (opening)
    mouth_y, width = 0.17, style["mouth_width"] * (1.0 + 0.25 * abs(e["curve"]) * a)
    opening = 0.06 * e["open"] * a
    if opening > 0.004:
        inner = (u / width) ** 2 + ((v - mouth_y - opening / 2) / opening) ** 2 <= 1.0
        img[inner & head] = np.array([90, 20, 30])
    curve = 0.09 * e["curve"] * a  # positive: the centre dips, a smile
    lip_y = mouth_y + curve * (1.0 - (u / width) ** 2)
    lip = (np.abs(u) <= width) & (np.abs(v - lip_y) <= 0.016)
    img[lip & head] = np.array([150, 40, 50])
    noise = rng.normal(0, 3, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate_demo_dataset(out_dir: str | Path, actors: int = 12, repetitions: int = 2, *, n_frames: int = 48,
                          size: int = 128, seed: int = 0, progress=None, frames_spread: int = 0) -> list[Path]:
    """Write actors x 6 emotions x repetitions RAVDESS-named mp4 files under out_dir/Actor_XX/, each of n_frames
    frames, or of n_frames + a seeded 0..frames_spread more (videos of different lengths, as real datasets')."""
    out_dir = Path(out_dir)
    written = []
    jobs = [(actor, code, rep) for actor in range(1, actors + 1) for code in DEMO_EMOTIONS
            for rep in range(1, repetitions + 1)]
    for actor, code, rep in jobs:
        style = actor_style(actor, seed)
        emotion = DEMO_EMOTIONS[code]
        rng = np.random.default_rng([seed, actor, code, rep])
        onset = rng.uniform(0.15, 0.35)
        frames = []
        length = n_frames + int(np.random.default_rng([seed, actor, code, rep, 1]).integers(0, frames_spread + 1))
        for i in range(length):
            t = i / max(length - 1, 1)
            a = float(np.clip((t - onset) / 0.3, 0.0, 1.0))
            a = a * a * (3 - 2 * a)  # smoothstep onset of the expression
            frames.append(draw_face(size, style, emotion, a=a, t=t, rng=rng))
        folder = out_dir / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"02-01-{code:02d}-01-01-{rep:02d}-{actor:02d}.mp4"
        write_video(path, frames)
        written.append(path)
        if progress is not None:
            progress()
    return written
