"""Look at the hand labels in labels.json: contact sheets per clip and gridded zooms of single frames.

Why: every box in labels.json was read off gridded, zoomed crops like the ones ``crop`` draws; these
commands let a reviewer check them the same way (README.md in this folder).

    .venv/bin/python bench/faces_eval/label_tools.py sheets             # writes hamilton_labels.jpg, facenet_labels.jpg
    .venv/bin/python bench/faces_eval/label_tools.py small              # bench/faces_small: real_labels.jpg, and
        # each mosaic with its (scaled) labels in bench/out/small_<name>.jpg
    .venv/bin/python bench/faces_eval/label_tools.py crop facenet_pytorch_video 20 850 600 1100 800 --zoom 3
        # -> bench/out/label_crop.png (or --out FILE): frame 20, x 850..1100, y 600..800, 10 px grid, labels

Green: demanded faces (>= 24 px, not ignored; in the small-face set >= 16 px, 16-24 px in cyan), with flags
p(rofile) o(ccluded) c(rowd); grey: ignored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MEDIA = ROOT / "demo" / "media"
SHEETS = {  # clip -> (output file, region of the frame shown (x0, y0, x1, y1) or None, scale, columns)
    "face_recognition_short_hamilton_clip": ("hamilton_labels.jpg", None, 0.5, 4),
    "facenet_pytorch_video": ("facenet_labels.jpg", (0, 420, 1920, 900), 0.45, 2),
}


def frames(clip: str, wanted: set[int]) -> dict[int, Image.Image]:
    """The wanted frames (sequential PyAV decode numbering) as RGB images."""
    out = {}
    with av.open(str(MEDIA / f"{clip}.mp4")) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in wanted:
                out[number] = frame.to_image()
            if number >= max(wanted):
                break
    return out


def _flags(face: dict) -> str:
    return "".join(c for c, key in (("p", "profile"), ("o", "occluded"), ("c", "crowd")) if face[key])


def draw_faces(image: Image.Image, faces: list[dict], origin: tuple[int, int], scale: float, width: int = 2,
               min_px: float = 24) -> None:
    """Label boxes on ``image``, which shows the frame from ``origin`` at ``scale``."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for face in faces:
        wanted = not face["ignore"] and face["h"] >= min_px
        colour = ((0, 255, 0) if face["h"] >= 24 else (0, 255, 255)) if wanted else (170, 170, 170)
        x, y = (face["x"] - origin[0]) * scale, (face["y"] - origin[1]) * scale
        draw.rectangle([x, y, x + face["w"] * scale, y + face["h"] * scale], outline=colour, width=width)
        text = _flags(face) if wanted else "ign"
        if text:
            draw.text((x + 2, y - 11), text, fill=colour, font=font)


def sheet(clip: str, labels: dict) -> Path:
    """Contact sheet of every labelled frame of ``clip``, boxes drawn, saved as JPEG next to labels.json."""
    name, region, scale, columns = SHEETS[clip]
    wanted = {int(n): faces for n, faces in labels["frames"].items()}
    images = frames(clip, set(wanted))
    region = region or (0, 0, labels["width"], labels["height"])
    tw, th = round((region[2] - region[0]) * scale), round((region[3] - region[1]) * scale)
    rows = -(-len(wanted) // columns)
    out = Image.new("RGB", (columns * tw, rows * th), (0, 0, 0))
    for i, number in enumerate(sorted(wanted)):
        tile = images[number].crop(region).resize((tw, th), Image.Resampling.LANCZOS)
        draw_faces(tile, wanted[number], region[:2], scale)
        ImageDraw.Draw(tile).text((4, 4), f"frame {number}", fill=(255, 255, 0), font=ImageFont.load_default())
        out.paste(tile, ((i % columns) * tw, (i // columns) * th))
    path = HERE / name
    out.save(path, quality=80, optimize=True)
    return path


def crop(clip: str, number: int, box: tuple[int, int, int, int], zoom: float, labels: dict, path: Path) -> Path:
    """A zoomed region of one frame with a 10 px grid (labelled every 50 px) and the label boxes."""
    x0, y0, x1, y1 = box
    image = frames(clip, {number})[number].crop(box)
    image = image.resize((round((x1 - x0) * zoom), round((y1 - y0) * zoom)), Image.Resampling.LANCZOS)
    margin = 28
    out = Image.new("RGB", (image.width + margin, image.height + margin))
    out.paste(image, (margin, margin))
    draw = ImageDraw.Draw(out, "RGBA")
    font = ImageFont.load_default()
    for gx in range(x0 - x0 % 10 + 10, x1, 10):
        px = margin + (gx - x0) * zoom
        draw.line([px, margin, px, out.height], fill=(255, 255, 255, 110 if gx % 50 == 0 else 45))
        if gx % 50 == 0:
            draw.text((px - 8, 2), str(gx), fill=(255, 255, 0), font=font)
    for gy in range(y0 - y0 % 10 + 10, y1, 10):
        py = margin + (gy - y0) * zoom
        draw.line([margin, py, out.width, py], fill=(255, 255, 255, 110 if gy % 50 == 0 else 45))
        if gy % 50 == 0:
            draw.text((0, py - 6), str(gy), fill=(255, 255, 0), font=font)
    faces = [dict(f, x=f["x"] - x0 + margin / zoom, y=f["y"] - y0 + margin / zoom)
             for f in labels["frames"].get(str(number), [])]
    draw_faces(out, faces, (0, 0), zoom, width=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def small_sheets() -> list[Path]:
    """bench/faces_small drawn: the real frames on one sheet (2x), each mosaic on its own (bench/out)."""
    import sys

    sys.path.insert(0, str(ROOT))
    from bench.eval_faces import SMALL_FACE_PX, small_face_sets

    paths = []
    for _name, labels, images in small_face_sets():
        keys = sorted(images)
        if len(keys) == 1:
            image = Image.fromarray(images[keys[0]])
            draw_faces(image, labels["frames"][keys[0]], (0, 0), 1.0, width=1, min_px=SMALL_FACE_PX)
            path = ROOT / "bench" / "out" / f"small_{keys[0]}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, quality=85)
        else:
            columns, zoom = 4, 1.5
            h, w = images[keys[0]].shape[:2]
            tw, th = round(w * zoom), round(h * zoom)
            out = Image.new("RGB", (columns * tw, -(-len(keys) // columns) * th))
            for i, key in enumerate(keys):
                tile = Image.fromarray(images[key]).resize((tw, th), Image.Resampling.LANCZOS)
                draw_faces(tile, labels["frames"][key], (0, 0), zoom, width=1, min_px=SMALL_FACE_PX)
                ImageDraw.Draw(tile).text((4, 4), key, fill=(255, 255, 0), font=ImageFont.load_default())
                out.paste(tile, ((i % columns) * tw, (i // columns) * th))
            path = ROOT / "bench" / "faces_small" / "real_labels.jpg"
            out.save(path, quality=70, optimize=True)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sheets")
    sub.add_parser("small")
    one = sub.add_parser("crop")
    one.add_argument("clip")
    one.add_argument("frame", type=int)
    one.add_argument("box", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"))
    one.add_argument("--zoom", type=float, default=3.0)
    one.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "label_crop.png")
    args = parser.parse_args()
    clips = json.loads((HERE / "labels.json").read_text())["clips"]
    if args.command == "small":
        for path in small_sheets():
            print(path)
    elif args.command == "sheets":
        for clip in SHEETS:
            print(sheet(clip, clips[clip]))
    else:
        print(crop(args.clip, args.frame, tuple(args.box), args.zoom, clips[args.clip], args.out))


if __name__ == "__main__":
    main()
