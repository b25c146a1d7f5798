"""Frame thumbnails: ``GET …/thumbnail?frame=N[&x&y&w&h]`` (spec §4).

Exactly frame N (a keyframe seek and a decode forward, :mod:`media_api.ffmpeg.frames`), as
JPEG, whole or cropped, cached on disk by (file content, frame, crop).
"""

from __future__ import annotations

from collections.abc import Mapping

from media_api.ffmpeg import images
from media_api.ffmpeg.frames import FrameReader
from media_api.ffmpeg.images import Box
from media_api.models import MediaFile
from media_api.services import image_cache
from media_api.services.files import frame_index_for
from media_api.services.representative import decoding
from momentry.errors import BadRequest, FrameOutOfRange
from momentry.pagination import int_param

CROP_PARAMS = ("x", "y", "w", "h")


def _given(params: Mapping[str, str], name: str) -> bool:
    return params.get(name) not in (None, "")


def parse_frame_request(params: Mapping[str, str], media_file: MediaFile) -> tuple[int, Box | None]:
    """``frame`` (required, 0..total-1) and an optional crop: all of x, y, w, h or none.

    400 names the bad parameter; a frame past the end is 416 ``FRAME_OUT_OF_RANGE``; a crop
    that leaves the frame is 400 with the frame size in ``details``.
    """
    if not _given(params, "frame"):
        raise BadRequest("frame is required.", param="frame")
    frame = int_param(params, "frame", 0, 0)
    if frame >= media_file.total_frames:
        raise FrameOutOfRange(
            f"frame {frame} is past the last frame ({media_file.total_frames - 1}).",
            {"parameter": "frame", "frame": frame, "total_frames": media_file.total_frames},
        )
    given = [name for name in CROP_PARAMS if _given(params, name)]
    if not given:
        return frame, None
    if len(given) < len(CROP_PARAMS):
        missing = [name for name in CROP_PARAMS if name not in given]
        raise BadRequest(f"x, y, w and h must be given together (missing: {', '.join(missing)}).",
                         param=missing[0], missing=missing)
    crop = Box(int_param(params, "x", 0, 0), int_param(params, "y", 0, 0),
               int_param(params, "w", 1, 1), int_param(params, "h", 1, 1))
    if not crop.inside(media_file.width, media_file.height):
        if crop.x + crop.width > media_file.width:
            param = "x" if crop.x >= media_file.width else "w"
        else:
            param = "y" if crop.y >= media_file.height else "h"
        raise BadRequest(
            f"The crop must lie inside the {media_file.width}x{media_file.height} frame.",
            param=param, frame_width=media_file.width, frame_height=media_file.height,
        )
    return frame, crop


def frame_key(media_file: MediaFile, frame: int, crop: Box | None) -> image_cache.ImageKey:
    name = f"frame-{frame}" if crop is None else f"frame-{frame}-crop-{crop.x}-{crop.y}-{crop.width}-{crop.height}"
    return image_cache.ImageKey(media_file.file_uuid, name)


def frame_thumbnail(media_file: MediaFile, frame: int, crop: Box | None) -> bytes:
    """The JPEG of exactly ``frame`` (cropped to ``crop``), from the cache or rendered once."""

    def render() -> bytes:
        with decoding(media_file.file_uuid, media_file.path):
            with FrameReader(media_file.path, frame_index_for(media_file)) as reader:
                return images.frame_jpeg(reader.read(frame), crop)

    return image_cache.get_or_render(frame_key(media_file, frame, crop), render)


__all__ = ["frame_key", "frame_thumbnail", "parse_frame_request"]
