"""Still images from decoded frames: RGB conversion, crops, square face crops, JPEG, blur.

Everything works on frames the :mod:`~media_api.ffmpeg.frames` reader produced, in-process
(a process per image would cost more than the work).

* RGB honours the frame's colour matrix (BT.709 for HD video) so faces keep their colours;
  the JPEG then carries ordinary JFIF (BT.601) YCbCr, which every viewer decodes right.
* Face crops for thumbnails are squares around the box (``FACE_MARGIN`` × its longer edge),
  shifted — not shrunk — to stay inside the frame and scaled, never stretched.
* Sharpness is FFmpeg's ``blurdetect`` (lower = sharper) on the face's luma, scaled to one
  fixed ``BLUR_SIZE`` square so small and large faces score on the same scale.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.filter import Graph
from av.video.reformatter import Colorspace
from PIL import Image

JPEG_QUALITY = 90
THUMBNAIL_SIZE = 320
#: Side of the square face crop relative to the box's longer edge (Frigate uses 1.1, Immich 1.1–1.2).
FACE_MARGIN = 1.25
#: Faces are scaled to this square before blurdetect so scores compare across box sizes.
BLUR_SIZE = 128


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, top-left origin."""

    x: int
    y: int
    width: int
    height: int

    def inside(self, frame_width: int, frame_height: int) -> bool:
        return (
            self.width >= 1 and self.height >= 1 and self.x >= 0 and self.y >= 0
            and self.x + self.width <= frame_width and self.y + self.height <= frame_height
        )


def square_around(box: Box, frame_width: int, frame_height: int, margin: float = FACE_MARGIN) -> Box:
    """The square centred on ``box`` with side ``margin`` × its longer edge, inside the frame.

    A square that would cross an edge is shifted back in; one larger than the frame is cut
    to the frame's shorter side (still square, so the scaled face is never stretched).
    """
    side = round(max(box.width, box.height) * margin)
    side = max(1, min(side, frame_width, frame_height))
    centre_x = box.x + box.width / 2
    centre_y = box.y + box.height / 2
    left = min(max(round(centre_x - side / 2), 0), frame_width - side)
    top = min(max(round(centre_y - side / 2), 0), frame_height - side)
    return Box(left, top, side, side)


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as an (h, w, 3) uint8 RGB array, converted with the frame's own colour matrix."""
    colorspace = frame.colorspace if frame.colorspace == Colorspace.ITU709 else None
    return frame.reformat(format="rgb24", src_colorspace=colorspace).to_ndarray()


_EIGHT_BIT_LUMA = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The decoded Y plane as it is (no range or matrix conversion), shape (h, w)."""
    if frame.format.name not in _EIGHT_BIT_LUMA:
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : frame.width]


def jpeg_bytes(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def frame_jpeg(frame: av.VideoFrame, crop: Box | None = None) -> bytes:
    """JPEG of the whole frame or of ``crop`` (already checked to lie inside it)."""
    rgb = to_rgb(frame)
    if crop is not None:
        rgb = rgb[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width]
    return jpeg_bytes(np.ascontiguousarray(rgb))


def face_square(rgb: np.ndarray, box: Box, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The square face crop around ``box``, scaled to ``size`` × ``size`` (RGB array)."""
    height, width = rgb.shape[:2]
    square = square_around(box, width, height)
    patch = Image.fromarray(np.ascontiguousarray(rgb[square.y : square.y + square.height,
                                                     square.x : square.x + square.width]))
    return np.asarray(patch.resize((size, size), Image.Resampling.LANCZOS))


def blur_score(luma_plane: np.ndarray, box: Box) -> float:
    """FFmpeg ``blurdetect`` of the face's luma scaled to ``BLUR_SIZE``² (lower = sharper)."""
    face = np.ascontiguousarray(luma_plane[box.y : box.y + box.height, box.x : box.x + box.width])
    graph = Graph()
    source = graph.add_buffer(width=face.shape[1], height=face.shape[0], format="gray", time_base=Fraction(1, 25))
    scale = graph.add("scale", f"w={BLUR_SIZE}:h={BLUR_SIZE}:flags=bicubic")
    detect = graph.add("blurdetect")
    sink = graph.add("buffersink")
    source.link_to(scale)
    scale.link_to(detect)
    detect.link_to(sink)
    graph.configure()
    picture = av.VideoFrame.from_ndarray(face, format="gray")
    picture.pts = 0
    graph.push(picture)
    return float(graph.pull().metadata["lavfi.blur"])


__all__ = [
    "BLUR_SIZE",
    "Box",
    "FACE_MARGIN",
    "JPEG_QUALITY",
    "THUMBNAIL_SIZE",
    "blur_score",
    "face_square",
    "frame_jpeg",
    "jpeg_bytes",
    "luma",
    "square_around",
    "to_rgb",
]
