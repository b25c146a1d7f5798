"""manage.py import_detections FILE_UUID PATH — JSON or CSV detections (spec §7), with the face vectors a JSON
file carries (``detect_faces --export-dir``)."""

from django.core.management.base import BaseCommand, CommandError

from media_api.models import MediaFile
from media_api.services.detections_import import ImportValidationError, import_file


class Command(BaseCommand):
    help = "Import detections for a registered file; any bad row refuses the whole import."

    def add_arguments(self, parser):
        parser.add_argument("file_uuid")
        parser.add_argument("path")
        parser.add_argument("--replace", action="store_true", help="delete the file's detections first")

    def handle(self, *args, file_uuid, path, replace, **options):
        media_file = MediaFile.objects.filter(file_uuid=file_uuid.lower()).first()
        if media_file is None:
            raise CommandError(f"unknown file_uuid: {file_uuid}")
        try:
            result = import_file(media_file, path, replace=replace)
        except FileNotFoundError:
            raise CommandError(f"no such file: {path}") from None
        except (UnicodeDecodeError, IsADirectoryError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        except ImportValidationError as exc:
            for bad in exc.errors:
                where = f"row {bad['row']}" if bad["row"] else "file"
                self.stderr.write(f"{where}: {'; '.join(bad['errors'])}")
            if exc.total_bad > len(exc.errors):
                self.stderr.write(f"... and {exc.total_bad - len(exc.errors)} more bad row(s)")
            raise CommandError(f"import refused: {exc.total_bad} bad row(s); nothing was written") from None
        self.stdout.write(
            f"imported {result.detections} detections into {result.traces_touched} traces "
            f"({result.traces_created} new), {result.identities_bound} trace(s) bound to identities"
        )
        if result.traces_embedded:
            self.stdout.write(f"face vectors stored for {result.traces_embedded} trace(s), "
                              f"{result.traces_with_exemplars} with exemplars")
        if result.vectors_skipped:
            self.stderr.write(result.vectors_skipped)
