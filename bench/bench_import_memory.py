"""Memory of ``import_detections`` while the file grows (goal: flat), against loading the file whole.

    .venv/bin/python bench/bench_import_memory.py [--rows 100000 700000] [--traces 300000]

Each measurement runs in its own process and reports its peak RSS: importing a JSON file of N rows
(SQLite in a throw-away data directory, or DATABASE_URL), and, as the baseline, only *reading* the
same file the way the importer used to (``json.load`` of the whole document). Flat means the import's
peak barely moves from the small file to the big one, while the baseline grows with the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def make_file(rows: int, traces: int) -> Path:
    path = OUT / f"detections_{rows}_{traces}.json"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    with path.open("w") as out:
        out.write('{"detections": [')
        for n in range(rows):
            w = rng.randint(20, 300)
            out.write(("," if n else "") + json.dumps({
                "trace_id": rng.randint(1, traces), "frame_number": rng.randint(0, 104), "x": rng.randint(0, 1919 - w),
                "y": rng.randint(0, 1079 - w), "width": w, "height": w, "confidence": round(rng.random(), 3),
                "label": "face"}))
        out.write("]}")
    return path


def child(mode: str, path: Path) -> None:
    """Runs in the measured process; prints the peak RSS in MB and the seconds taken."""
    start = time.perf_counter()
    if mode == "baseline":
        with path.open() as handle:
            rows = json.load(handle)["detections"]
        assert rows
    else:
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from media_api.services.files import register_file

        call_command("migrate", verbosity=0)
        media_file = register_file(ROOT / "demo/media/facenet_pytorch_video.mp4").file
        call_command("import_detections", media_file.file_uuid, str(path), "--replace", stdout=open(os.devnull, "w"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "seconds": time.perf_counter() - start}))


def measure(mode: str, path: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("MOMENTRY_DATA_DIR", tempfile.mkdtemp(prefix="import-mem-", dir=OUT))
    result = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], env=env, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 700_000])
    parser.add_argument("--traces", type=int, default=300_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {database}, "
          f"date {time.strftime('%Y-%m-%d %H:%M %Z')}, up to {args.traces} distinct trace ids")
    print("| rows | file | import peak RSS | import time | baseline: json.load peak RSS |")
    print("|---|---|---|---|---|")
    for rows in args.rows:
        path = make_file(rows, args.traces)
        imported, baseline = measure("import", path), measure("baseline", path)
        print(f"| {rows:,} | {path.stat().st_size / 1e6:.0f} MB | {imported['peak_mb']:.0f} MB "
              f"| {imported['seconds']:.1f} s | {baseline['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
