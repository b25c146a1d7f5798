"""Face crop clip vs the full-frame highlight video: first (uncached) render time and size.

    .venv/bin/python bench/bench_crop_clip.py [--repeats 3]

The cast page's hover clip used to be the trace's full-frame highlight video (the first play of an
unrendered one waited for a whole-frame re-encode). This renders, for the longest demo trace of
each demo clip (the 1080p facenet clip and the 640x360 Hamilton clip), the highlight video
(``padding=0&audio=off``) and the ``crop=face&size=192`` clip into an emptied cache, through the
real route with Django's test client, and reports the median time of each and their ratio
(measured in the same run), plus the time of a cache hit. Private SQLite database and data
directory under bench/out/. Prints a Markdown section for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
OUT.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "momentry.settings"
os.environ["MOMENTRY_DATA_DIR"] = str(OUT / "crop-clip-data")
os.environ["DATABASE_URL"] = f"sqlite:///{OUT / 'crop-clip-bench.sqlite3'}"
os.environ.setdefault("MOMENTRY_LOG_LEVEL", "WARNING")

CLIPS = ("facenet_pytorch_video", "face_recognition_short_hamilton_clip")


def fetch(client, url: str) -> tuple[float, int]:
    start = time.perf_counter()
    response = client.get(url)
    size = sum(len(chunk) for chunk in response.streaming_content) if response.streaming else len(response.content)
    response.close()
    assert response.status_code == 200, (url, response.status_code)
    return time.perf_counter() - start, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from media_api.models import Detection, Trace
    from media_api.services.detections_import import import_detections
    from media_api.services.files import register_file

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-crop", defaults={"is_staff": True})
    client = APIClient()
    client.force_login(user)

    rows = []
    for stem in CLIPS:
        media_file = register_file(ROOT / "demo" / "media" / f"{stem}.mp4").file
        if not Detection.objects.filter(file=media_file).exists():
            data = json.loads((ROOT / "demo" / "detections" / f"{stem}.json").read_text())
            import_detections(media_file, data["detections"])
        trace = Trace.objects.filter(file=media_file).order_by("-face_count", "trace_id").first()
        base = f"/api/v1/file/{media_file.file_uuid}/trace/{trace.trace_id}/video"
        times: dict[str, list[float]] = {"full": [], "crop": [], "hit": []}
        sizes = {}
        for _ in range(args.repeats):  # interleaved, each into an emptied cache
            for kind, query in (("full", "?padding=0&audio=off"), ("crop", "?crop=face&size=192")):
                shutil.rmtree(Path(settings.CACHE_DIR) / "clips", ignore_errors=True)
                seconds, sizes[kind] = fetch(client, base + query)
                times[kind].append(seconds)
            times["hit"].append(fetch(client, base + "?crop=face&size=192")[0])
        median = {kind: statistics.median(values) for kind, values in times.items()}
        frames = trace.end_frame - trace.start_frame + 1
        rows.append(f"| {media_file.width}x{media_file.height}, trace {trace.trace_id} ({frames} frames) | "
                    f"{median['full']:.2f} s, {sizes['full'] // 1024} KB | {median['crop']:.2f} s, "
                    f"{sizes['crop'] // 1024} KB | {median['full'] / median['crop']:.1f}× | "
                    f"{median['hit'] * 1000:.0f} ms |")

    load = os.getloadavg()[0]
    print(f"## Face crop clip (`bench/bench_crop_clip.py`)\n\n{platform.machine()}, {os.cpu_count()} cores (shared, "
          f"load {load:.1f}), {date.today()}, median of {args.repeats} interleaved uncached renders through the "
          "route (Django test client).\n")
    print("| source | highlight video (padding 0) | crop=face&size=192 | speed-up | cache hit |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
