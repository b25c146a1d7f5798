"""manage.py register_file PATH|s3://bucket/key… — probe, hash and index videos; prints each file_uuid."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from media_api.services.files import ProbeError, register_file, register_object


class Command(BaseCommand):
    help = "Register video files: probe, SHA-256 file_uuid, frame index. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH",
                            help="a local path, or s3://bucket/key of an object in a configured bucket")
        parser.add_argument("--queue", action="store_true", help="submit jobs for the workers instead (Celery)")

    def handle(self, *args, paths, queue=False, **options):
        if queue:
            from jobs.models import Job
            from jobs.queueing import queue_all

            for path in paths:
                params = {"url": path} if path.startswith("s3://") else {"path": str(Path(path).resolve())}
                queue_all(Job.Kind.REGISTER, params=params, write=self.stdout.write)
            return
        failures = 0
        last_uuid = None
        for path in paths:
            try:
                result = register_object(path) if path.startswith("s3://") else register_file(path)
            except ProbeError as exc:
                failures += 1
                self.stderr.write(f"error: {exc}")
                continue
            f = result.file
            state = "already_exists" if result.already_exists else "registered"
            self.stdout.write(
                f"{state}: {f.name} {f.width}x{f.height} {f.fps_rational} fps, {f.total_frames} frames, "
                f"{f.duration:.3f} s, audio={'yes' if f.has_audio else 'no'} file_uuid={f.file_uuid}"
            )
            for warning in f.warnings:
                self.stderr.write(f"warning: {f.name}: {warning}")
            last_uuid = f.file_uuid
        if failures:
            raise CommandError(f"{failures} of {len(paths)} path(s) could not be registered")
        if last_uuid:
            self.stdout.write(last_uuid)
