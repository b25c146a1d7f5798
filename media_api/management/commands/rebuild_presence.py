"""manage.py rebuild_presence [--file UUID…] [--check] — traces' presence recomputed from their detections."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from media_api.models import MediaFile, Trace
from media_api.services import presence

#: Traces per transaction (and per progress line).
BATCH = 20 * presence.CHUNK


class Command(BaseCommand):
    help = ("Recompute every trace's presence (the run list of frames co-occurrence reads) from its detections, "
            "which stay the source of truth. --check only compares and exits 1 when something differs.")

    def add_arguments(self, parser):
        parser.add_argument("--file", dest="files", nargs="+", default=[], metavar="UUID",
                            help="only these files (default: every registered file)")
        parser.add_argument("--check", action="store_true",
                            help="write nothing; list traces whose stored presence differs from their detections")

    def handle(self, *args, files, check, **options):
        traces = Trace.objects.all()
        if files:
            wanted = {value.strip().lower().replace("-", "") for value in files}
            found = set(MediaFile.objects.filter(file_uuid__in=wanted).values_list("file_uuid", flat=True))
            if wanted - found:
                raise CommandError(f"unknown file_uuid: {', '.join(sorted(wanted - found))}")
            traces = traces.filter(file__file_uuid__in=wanted)
        pks = list(traces.order_by("pk").values_list("pk", flat=True))
        if check:
            stale = presence.stale_presence(pks)
            self.stdout.write(f"{len(pks)} trace(s) checked; {len(stale)} differ from their detections")
            if stale:
                examples = Trace.objects.filter(pk__in=stale[:10]).select_related("file")
                for trace in examples:
                    self.stdout.write(f"  {trace.file.file_uuid}/{trace.trace_id}")
                raise CommandError(f"{len(stale)} trace(s) with stale presence; run rebuild_presence", returncode=1)
            return
        for start in range(0, len(pks), BATCH):
            with transaction.atomic():
                presence.refresh_presence(pks[start : start + BATCH])
            if options.get("verbosity", 1) >= 2:
                self.stdout.write(f"  {min(start + BATCH, len(pks))}/{len(pks)}")
        self.stdout.write(f"presence rebuilt for {len(pks)} trace(s)")
