"""manage.py reembed_faces [--file UUID…] [--only-stale] [--queue] — new embeddings for existing traces."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs.queueing import check_known_files
from media_api.faces.embeddings import MODEL_NAME, ModelFilesMissing
from media_api.faces.zoo import ModelFileAltered
from media_api.services.reembed import files_to_reembed, reembed_file


class Command(BaseCommand):
    help = (f"Embed the faces of existing traces again with the current model ({MODEL_NAME}) without detecting "
            "again: people, hidden traces and curation history are kept. Default: every file with traces.")

    def add_arguments(self, parser):
        parser.add_argument("--file", dest="file_uuids", nargs="+", default=[], metavar="FILE_UUID",
                            help="only these files")
        parser.add_argument("--only-stale", action="store_true",
                            help=f"only traces without a {MODEL_NAME} vector (embedded by another model, or never)")
        parser.add_argument("--queue", action="store_true",
                            help="submit one reembed job per file for the workers instead (GET /api/v1/jobs)")

    def handle(self, *args, file_uuids, only_stale, queue, **options):
        check_known_files(file_uuids)
        files = files_to_reembed(file_uuids, only_stale=only_stale)
        if not files:
            self.stdout.write("nothing to re-embed")
            return
        if queue:
            from jobs.queueing import queue_all

            queue_all("reembed", files=files, params={"only_stale": only_stale}, write=self.stdout.write)
            return
        for media_file in files:
            try:
                result = reembed_file(media_file, only_stale=only_stale)
            except (ModelFilesMissing, ModelFileAltered) as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"{media_file.file_uuid} {media_file.name}: {result.embedded} of {result.traces} traces embedded "
                f"({result.model}), {result.unreadable} without a readable face"
                + (f", {result.changed_meanwhile} changed meanwhile (left alone)" if result.changed_meanwhile else "")
                + f"; {result.faces_embedded} faces, {result.frames_decoded} frames decoded, {result.seconds:.1f} s")
