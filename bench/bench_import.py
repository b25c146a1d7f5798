"""Import 1 million detections on PostgreSQL (goal: ≤ 60 s), against a raw COPY floor.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/momentry_bench_import \
        .venv/bin/python bench/bench_import.py [--rows 1000000]

The floor is PostgreSQL's own COPY of the same CSV into an unindexed table: what no
importer can beat. The ratio is what validation, trace bookkeeping and indexes cost.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--traces", type=int, default=5_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL database")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from media_api.models import Detection, Trace
    from media_api.services.files import register_file

    call_command("migrate", verbosity=0)
    media_file = register_file(ROOT / "demo/media/facenet_pytorch_video.mp4").file
    Detection.objects.filter(file=media_file).delete()
    Trace.objects.filter(file=media_file).delete()

    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "detections_1m.csv"
    rng = random.Random(7)
    with open(csv_path, "w") as handle:
        handle.write("trace_id,frame_number,x,y,width,height,confidence,label\n")
        for _ in range(args.rows):
            w = rng.randint(20, 300)
            handle.write(f"{rng.randint(1, args.traces)},{rng.randint(0, 104)},{rng.randint(0, 1919 - w)},"
                         f"{rng.randint(0, 1079 - w)},{w},{w},{rng.random():.3f},face\n")

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_floor")
        cursor.execute("CREATE UNLOGGED TABLE bench_floor (trace_id int, frame_number int, x int, y int, "
                       "width int, height int, confidence float8, label text)")
        start = time.perf_counter()
        with cursor.cursor.copy("COPY bench_floor FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            with open(csv_path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    copy.write(chunk)
        floor = time.perf_counter() - start
        cursor.execute("DROP TABLE bench_floor")

    start = time.perf_counter()
    call_command("import_detections", media_file.file_uuid, str(csv_path), "--replace")
    elapsed = time.perf_counter() - start
    count = Detection.objects.filter(file=media_file).count()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, date {time.strftime('%Y-%m-%d')}")
    print(f"rows {count}: import_detections {elapsed:.1f} s (goal <= 60 s), raw COPY floor {floor:.1f} s, "
          f"ratio {elapsed / floor:.1f}x, {count / elapsed:,.0f} rows/s")
    Detection.objects.filter(file=media_file).delete()
    Trace.objects.filter(file=media_file).delete()


if __name__ == "__main__":
    main()
