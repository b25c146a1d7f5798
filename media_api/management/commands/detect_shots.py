"""manage.py detect_shots [--file UUID…] [--missing] [--queue] — find and store the shots (hard cuts) of files."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs.queueing import check_known_files
from media_api.ffmpeg.frames import FrameReadError
from media_api.services.shots import FrameCountMismatch, detect_shots, files_for_shots


class Command(BaseCommand):
    help = ("Find the hard cuts of files by decoding them once and store their shots (GET /api/v1/file/{uuid}/shots), "
            "replacing any they had. Face analysis stores shots too; this is for files without it. "
            "Default: every registered file.")

    def add_arguments(self, parser):
        parser.add_argument("--file", dest="file_uuids", nargs="+", default=[], metavar="FILE_UUID",
                            help="only these files")
        parser.add_argument("--missing", action="store_true", help="only files that have no shots yet")
        parser.add_argument("--queue", action="store_true",
                            help="submit one detect_shots job per file for the workers instead (GET /api/v1/jobs)")

    def handle(self, *args, file_uuids, missing, queue, **options):
        check_known_files(file_uuids)
        files = files_for_shots(file_uuids, missing=missing)
        if not files:
            self.stdout.write("no file to analyse")
            return
        if queue:
            from jobs.queueing import queue_all

            queue_all("detect_shots", files=files, write=self.stdout.write)
            return
        for media_file in files:
            try:
                result = detect_shots(media_file)
            except (FrameCountMismatch, FrameReadError) as exc:
                raise CommandError(f"{media_file.file_uuid}: {exc}") from None
            plural = "" if result.shots == 1 else "s"
            self.stdout.write(f"{media_file.file_uuid} {media_file.name}: {result.shots} shot{plural} "
                              f"(cuts at frames {', '.join(map(str, result.cuts)) or 'none'}), "
                              f"{result.frames_decoded} frames decoded, {result.seconds:.1f} s")
