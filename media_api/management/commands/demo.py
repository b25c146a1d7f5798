"""manage.py demo — the demo clips with their traces, named people, a user and an API key.

Traces come from the project's own face pipeline (``detect_faces``: BlazeFace detection,
MOSSE tracking on every frame, dlib ResNet embeddings), run on each clip that has none yet.
A few people are then named from ``demo/identities.json``: each entry names a person by where
they are (a point on a frame, picked by looking at the video), so the names land on the right
traces whatever numbers the pipeline gives them; others are left for staff to name. Every
trace's face and thumbnail are prewarmed so the admin shows faces at once.

Idempotent: running it again re-uses what exists (same file_uuids, traces, identities) and
issues a fresh API key.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import F

from identities.cooccurrence import first_cooccurrence
from identities.models import Identity
from media_api.models import Detection, Trace
from media_api.services.faces import detect_faces
from media_api.services.files import register_file

DEMO_DIR = Path(settings.BASE_DIR) / "demo"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = "Register the demo clips, load their traces, name a few people, create a demo user and API key."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="http://127.0.0.1:8000", help="base URL used in the printed examples")

    def handle(self, *args, host: str, **options):
        self.verbosity = options.get("verbosity", 1)
        files = []
        for video in sorted((DEMO_DIR / "media").glob("*.mp4")):
            media_file = register_file(video).file
            self._load_traces(media_file)
            files.append(media_file)
        named = self._name_people(files)
        call_command("prewarm_thumbnails", workers=1, verbosity=0, stdout=self.stdout)
        key = self._demo_user_and_key()
        self._print_examples(host.rstrip("/"), files, named, key)

    def _load_traces(self, media_file) -> None:
        if Trace.objects.filter(file=media_file).exists():
            return
        result = detect_faces(media_file, progress=self.verbosity >= 1)
        self.stdout.write(f"{media_file.name}: {result.detections} detections in {result.traces} traces "
                          f"(face pipeline, {result.seconds:.1f} s)")

    @transaction.atomic
    def _name_people(self, files) -> list[Identity]:
        """Bind the traces that demo/identities.json points at (``at``: [frame, x, y] inside the person's face)."""
        path = DEMO_DIR / "identities.json"
        if not path.exists():
            return []
        by_stem = {Path(f.name).stem: f for f in files}
        named: dict[str, Identity] = {}
        for entry in json.loads(path.read_text()):
            media_file = by_stem.get(entry["file"])
            if media_file is None:
                continue
            identity = Identity.objects.filter(name=entry["name"]).order_by("id").first()
            if identity is None:
                identity = Identity.objects.create(name=entry["name"], metadata=entry.get("metadata", {}))
            traces = set()
            for frame, x, y in entry["at"]:
                traces |= set(Detection.objects.filter(
                    file=media_file, frame_number=frame, x__lte=x, y__lte=y,
                    x__gt=x - F("width"), y__gt=y - F("height")).values_list("trace_id", flat=True))
            Trace.objects.filter(pk__in=traces, identity__isnull=True).update(identity=identity)
            named[identity.identity_uuid] = identity
        return list(named.values())

    @staticmethod
    def _cooccurring_pair(files, named: list[Identity]):
        for media_file in files:
            for i, a in enumerate(named):
                for b in named[i + 1:]:
                    if first_cooccurrence(media_file.pk, a.pk, b.pk) is not None:
                        return media_file, a, b
        return None

    def _demo_user_and_key(self) -> str:
        from momentry.services import create_api_key

        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=DEMO_USER, defaults={"is_staff": True,
                                                                                       "is_superuser": True})
        if created or not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save()
        return create_api_key(user, name="demo", write=True).key

    def _print_examples(self, host: str, files, named, key: str) -> None:
        out = self.stdout.write
        out("")
        out(f"Demo user: {DEMO_USER} / {DEMO_PASSWORD} (staff: {host}/admin/)")
        out(f"API docs: {host}/api/v1/docs/")
        out("Try:")
        out(f'  export API={host} KEY="{key}"')
        out('  curl -s "$API/api/v1/files" -H "X-API-Key: $KEY"')
        for media_file in files:
            trace = Trace.objects.filter(file=media_file).order_by("-face_count").first()
            u = media_file.file_uuid
            out(f"  # {media_file.name}")
            out(f'  curl -s "$API/api/v1/file/{u}" -H "X-API-Key: $KEY"')
            out(f'  curl -s "$API/api/v1/file/{u}/traces?sort=-face_count" -H "X-API-Key: $KEY"')
            out(f'  curl -s "$API/api/v1/file/{u}/thumbnail?frame=60" -H "X-API-Key: $KEY" -o frame60.jpg')
            out(f'  curl -s "$API/api/v1/file/{u}/clip?start_frame=0&end_frame=47" -H "X-API-Key: $KEY" -o clip.ts')
            out(f'  curl -s -r 0-1023 "$API/api/v1/file/{u}/video" -H "X-API-Key: $KEY" -o head.bin')
            if trace is not None:
                t = trace.trace_id
                out(f'  curl -s "$API/api/v1/file/{u}/trace/{t}/representative-face" -H "X-API-Key: $KEY"')
                out(f'  curl -s "$API/api/v1/file/{u}/trace/{t}/thumbnail" -H "X-API-Key: $KEY" -o face.jpg')
                out(f'  curl -s "$API/api/v1/file/{u}/trace/{t}/video" -H "X-API-Key: $KEY" -o trace.mp4')
        pair = self._cooccurring_pair(files, named)
        if pair is not None:
            media_file, a, b = pair
            out(f"  # where {a.name} and {b.name} first appear together")
            out(f'  curl -s "$API/api/v1/file/{media_file.file_uuid}/identities/{a.identity_uuid}'
                f'/co-occur-with/{b.identity_uuid}" -H "X-API-Key: $KEY"')
        out('  curl -s "$API/api/v1/identities" -H "X-API-Key: $KEY"')
        if files:
            u = files[0].file_uuid
            out("  # jobs, run by the worker demo.sh started: detect the faces again (people stay named), then poll")
            out(f'  JOB=$(curl -s -X POST "$API/api/v1/file/{u}/detect-faces" -H "X-API-Key: $KEY" '
                "-H 'Content-Type: application/json' -d '{}' | python3 -c 'import json,sys; "
                "print(json.load(sys.stdin)[\"job\"][\"id\"])')")
            out('  curl -s "$API/api/v1/jobs/$JOB" -H "X-API-Key: $KEY"      # state, progress, result')
            out(f'  curl -s -X POST "$API/api/v1/files" -H "X-API-Key: $KEY" -H \'Content-Type: application/json\' '
                f'-d \'{{"path": "{Path(files[0].path).resolve()}"}}\'  # register a file under MOMENTRY_MEDIA_ROOTS')
        out("API key (shown once):")
        out(key)
