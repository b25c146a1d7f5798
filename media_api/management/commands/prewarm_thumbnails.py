"""manage.py prewarm_thumbnails [--file UUID…] [--workers N] [--force] — faces and thumbnails in bulk."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from media_api.models import MediaFile
from media_api.services import prewarm


class Command(BaseCommand):
    help = ("Compute the representative face and the 320x320 thumbnail of every trace missing them, "
            "one decoding pass per batch of traces, in parallel worker processes. Resumable; Ctrl-C keeps "
            "finished work and leaves no half-written file.")

    def add_arguments(self, parser):
        parser.add_argument("--file", dest="files", nargs="+", default=[], metavar="UUID",
                            help="only these files (default: every registered file)")
        parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                            help="worker processes (default: 2, or 1 on a single core)")
        parser.add_argument("--force", action="store_true", help="recompute faces and thumbnails that exist")
        parser.add_argument("--batch-size", type=int, default=prewarm.DEFAULT_BATCH,
                            help=f"traces per batch (default {prewarm.DEFAULT_BATCH})")
        parser.add_argument("--queue", action="store_true", help="submit one job per file for the workers instead")

    def handle(self, *args, files, workers, force, batch_size, queue=False, **options):
        if workers < 1 or batch_size < 1:
            raise CommandError("--workers and --batch-size must be at least 1")
        selected = MediaFile.objects.all()
        if files:
            wanted = {value.strip().lower() for value in files}
            selected = MediaFile.objects.filter(file_uuid__in=wanted)
            unknown = wanted - set(selected.values_list("file_uuid", flat=True))
            if unknown:
                raise CommandError(f"unknown file_uuid: {', '.join(sorted(unknown))}")

        if queue:
            from jobs.models import Job
            from jobs.queueing import queue_all

            queue_all(Job.Kind.PREWARM, files=selected.order_by("pk"), params={"force": force},
                      write=self.stdout.write)
            return
        summary = prewarm.Summary()
        batches = list(prewarm.plan(selected, force=force, batch_size=batch_size, workers=workers, summary=summary))
        total = sum(len(b) for b in batches)
        self.stdout.write(f"{total} trace(s) to warm in {len(batches)} batch(es) with {workers} worker(s); "
                          f"{sum(summary.skipped.values())} skipped")
        show = options.get("verbosity", 1) >= 1
        with tqdm(total=total, unit="trace", desc="prewarm", disable=not show or not total) as bar:
            prewarm.prewarm(batches, summary, workers=workers, on_progress=bar.update)
        self._report(summary)
        if summary.interrupted:
            raise CommandError("interrupted: finished batches are kept; run the command again to resume",
                               returncode=130)
        if summary.failed:
            raise CommandError(f"{sum(summary.failed.values())} trace(s) failed", returncode=1)

    def _report(self, summary: prewarm.Summary) -> None:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(summary.skipped.items())) or "none"
        self.stdout.write(f"done: {summary.done}; skipped: {sum(summary.skipped.values())} ({skipped}); "
                          f"failed: {sum(summary.failed.values())}")
        for reason, count in summary.failed.most_common():
            examples = ", ".join(summary.failed_examples.get(reason, []))
            self.stdout.write(f"  failed {count}: {reason} (e.g. {examples})")
