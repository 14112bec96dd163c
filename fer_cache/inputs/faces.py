"""Face crops for raw videos: one smoothed square box per clip, found by OpenCV's bundled Haar cascade (it ships
inside the opencv-python-headless wheel: nothing is downloaded), grown by a margin, cropped before resizing.

Axes: F decoded frames, K clips, T frames per clip, H/W pixels.
"""

from dataclasses import dataclass

import numpy as np

from fer_cache.errors import ConfigError, DecodeError

DETECTOR = "opencv-haar-frontalface-default"
DETECT_SIDE = 240  # frames are searched at this short side: fast, and faces of in-the-wild clips stay findable
FRAMES_SEARCHED = 4  # per clip, spread over it


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    size: int


def load_detector():
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError("face_crop needs OpenCV's bundled face detector: pip install 'fer-jepa[face]' "
                          "(opencv-python-headless)") from exc
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if detector.empty():
        raise ConfigError("this OpenCV has no bundled haarcascade_frontalface_default.xml (OpenCV 5 dropped them); "
                          "install opencv-python-headless<5")
    return detector


def faces_in(detector, frame: np.ndarray) -> list[tuple[float, float, float]]:
    """(centre y, centre x, side) of each face in an RGB frame [H, W, 3], in the frame's pixels."""
    import cv2
    H, W = frame.shape[:2]
    scale = DETECT_SIDE / min(H, W)
    small = cv2.resize(frame, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    found = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [((y + h / 2) / scale, (x + w / 2) / scale, max(w, h) / scale) for x, y, w, h in found]


def clip_box(faces: list[tuple[float, float, float]], height: int, width: int, *, margin: float) -> Box:
    """The median face of a clip (the largest per frame), squared, grown by margin on each side, kept in the frame."""
    centre_y, centre_x, side = np.median(np.array(faces), axis=0)
    size = int(round(min(side * (1 + 2 * margin), height, width)))
    top = int(round(np.clip(centre_y - size / 2, 0, height - size)))
    left = int(round(np.clip(centre_x - size / 2, 0, width - size)))
    return Box(top, left, size)


def face_boxes(detector, frames: np.ndarray, indices: np.ndarray, *, margin: float) -> list[Box]:
    """One box per clip (indices [K, T] into frames [F, H, W, 3]); a clip where no frame shows a face takes the
    box of the whole video's faces; a video without any face is a decode failure, never a silent full frame."""
    H, W = frames.shape[1:3]
    per_clip, searched_frames = [], 0
    for clip in indices:
        searched = clip[np.linspace(0, len(clip) - 1, min(FRAMES_SEARCHED, len(clip))).round().astype(int)]
        searched_frames += len(searched)
        faces = [max(found, key=lambda f: f[2]) for i in searched if (found := faces_in(detector, frames[i]))]
        per_clip.append(faces)
    everything = [f for faces in per_clip for f in faces]
    if not everything:
        raise DecodeError(f"face_crop: no face found in the {searched_frames} frames searched; extract this dataset "
                          "without face_crop, or leave the video out")
    return [clip_box(faces or everything, H, W, margin=margin) for faces in per_clip]


def crop_clips(frames: np.ndarray, indices: np.ndarray, boxes: list[Box], *, crop: int) -> np.ndarray:
    """Frames [F, H, W, 3], clip indices [K, T], one box per clip -> clips [K, 1, T, crop, crop, 3] uint8."""
    import cv2
    K, T = indices.shape
    out = np.empty((K, 1, T, crop, crop, 3), dtype=np.uint8)
    for k, (clip, box) in enumerate(zip(indices, boxes)):
        for t, i in enumerate(clip):
            patch = frames[i, box.top:box.top + box.size, box.left:box.left + box.size]
            interpolation = cv2.INTER_AREA if box.size >= crop else cv2.INTER_CUBIC
            out[k, 0, t] = cv2.resize(patch, (crop, crop), interpolation=interpolation)
    return out
