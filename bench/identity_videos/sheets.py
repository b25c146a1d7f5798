"""Contact sheets of the pipeline's traces on the clips of this folder, for labelling people by eye.

    .venv/bin/python bench/identity_videos/sheets.py [CLIP ...]     # default: every clip of people.json

For each clip: the face pipeline (``analyse_video``) runs as ``detect_faces`` does; each trace gets one
tile, its biggest embedded face (or its biggest box when none was embedded) with 60 % margin, captioned
``#n f<frame> (x,y) e<embedded faces>`` and, when people.json already names it, the person. Written to
bench/out/identity_videos_<clip>.jpg, with a line per trace on stdout. A label in people.json is a
point (frame, x, y) inside the person's face on one frame: copy the caption's frame and centre.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

TILE = 160


def frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The wanted frames (sequential decode numbering, as the pipeline's FrameReader counts) as RGB arrays."""
    import av

    out = {}
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in wanted:
                out[number] = frame.to_ndarray(format="rgb24")
            if number >= max(wanted):
                break
    return out


def best_face(track) -> int:
    """Position in ``track.frames`` of the biggest embedded face (biggest box when none was embedded)."""
    embedded = [i for i, v in enumerate(track.embeddings) if isinstance(v, np.ndarray)]
    # embeddings are not aligned with frames: pick among detected frames, which is where embeddings come from
    candidates = [i for i, d in enumerate(track.detected) if d] if embedded else []
    candidates = candidates or list(range(len(track.frames)))
    return max(candidates, key=lambda i: track.boxes[i][3])


def sheet(stem: str, people: dict) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from bench.eval_faces import person_of
    from media_api.faces.pipeline import analyse_video
    from media_api.ffmpeg.probe import probe_video

    path = HERE / f"{stem}.mp4"
    probe = probe_video(path)
    analysis = analyse_video(path, probe.index, float(probe.fps))
    picks = [(n, track, best_face(track)) for n, track in enumerate(analysis.tracks, start=1)]
    images = frames(path, {track.frames[i] for _, track, i in picks}) if picks else {}
    columns = 6
    rows = max(1, -(-len(picks) // columns))
    out = Image.new("RGB", (columns * TILE, rows * (TILE + 24)), (0, 0, 0))
    font = ImageFont.load_default()
    for k, (number, track, i) in enumerate(picks):
        frame = track.frames[i]
        x, y, w, h = (int(v) for v in track.boxes[i])
        image = images[frame]
        margin = int(0.6 * max(w, h))
        crop = Image.fromarray(image[max(0, y - margin):y + h + margin, max(0, x - margin):x + w + margin])
        crop.thumbnail((TILE, TILE))
        embedded = sum(isinstance(v, np.ndarray) for v in track.embeddings)
        who = person_of(track, people)
        cx, cy = x + w // 2, y + h // 2
        tile_x, tile_y = (k % columns) * TILE, (k // columns) * (TILE + 24)
        out.paste(crop, (tile_x, tile_y))
        draw = ImageDraw.Draw(out)
        draw.text((tile_x + 2, tile_y + TILE), f"#{number} f{frame} ({cx},{cy}) e{embedded}", fill=(255, 255, 0),
                  font=font)
        draw.text((tile_x + 2, tile_y + TILE + 11), (who or "-")[:26], fill=(0, 255, 0), font=font)
        print(f"{stem} #{number}: frames {track.start}-{track.end}, face {h} px at f{frame} ({cx},{cy}), "
              f"{embedded} embedded, person {who}")
    target = ROOT / "bench" / "out" / f"identity_videos_{stem}.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    out.save(target, quality=85)
    print("->", target.relative_to(ROOT))


def main() -> None:
    import django

    django.setup()
    labels = json.loads((HERE / "people.json").read_text())["clips"]
    for stem in sys.argv[1:] or list(labels):
        sheet(stem, labels.get(stem, {}))


if __name__ == "__main__":
    main()
