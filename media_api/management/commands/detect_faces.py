"""manage.py detect_faces FILE_UUID… [--stride K] [--replace] [--export-dir DIR] — built-in face analysis."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from media_api.faces.embeddings import ModelFilesMissing
from media_api.faces.pipeline import FaceAnalysis, analyse_video
from media_api.faces.zoo import ModelFileAltered
from media_api.models import MediaFile, Trace
from media_api.services.detections_import import export_vectors
from media_api.services.faces import FacesAlreadyDetected, store_analysis
from media_api.services.files import frame_index_for


def export_analysis(analysis: FaceAnalysis, media_file: MediaFile, path: Path) -> None:
    """Write the detections in the import format (with origin), plus the face vectors stored for each
    trace (``embedding_model``, ``trace_embeddings``, ``trace_exemplars``: what an import restores)."""
    payload = {"detections": analysis.rows(), **export_vectors(media_file)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")


class Command(BaseCommand):
    help = ("Detect faces (YuNet), follow them on every frame (Median Flow), embed them (SFace) and store the "
            "traces; a re-run with --replace keeps people named where the new trace is the same person.")

    def add_arguments(self, parser):
        parser.add_argument("file_uuid", nargs="+")
        parser.add_argument("--stride", type=int, default=None,
                            help="detect on every K-th frame (default: about 5 per second); tracking fills the rest")
        parser.add_argument("--replace", action="store_true",
                            help="replace the file's traces (bound people carry over to the matching new traces)")
        parser.add_argument("--export-dir", default=None,
                            help="also write <file name>.json in the import format to this directory, with each "
                                 "trace's face vectors (mean and exemplars)")
        parser.add_argument("--queue", action="store_true",
                            help="submit jobs for the workers instead (Celery; long files run in chunks on any "
                                 "worker; a job replaces traces, keeping people named)")

    def handle(self, *args, file_uuid, stride, replace, export_dir, queue=False, **options):
        if stride is not None and stride < 1:
            raise CommandError("--stride must be at least 1")
        if queue:
            from jobs.models import Job
            from jobs.queueing import queue_all

            media_files = [MediaFile.objects.filter(file_uuid=v.lower()).first() for v in file_uuid]
            if None in media_files:
                raise CommandError("unknown file_uuid")
            queue_all(Job.Kind.DETECT, files=media_files, params={"stride": stride} if stride else {},
                      write=self.stdout.write)
            return
        files = []
        for value in file_uuid:
            media_file = MediaFile.objects.filter(file_uuid=value.lower()).first()
            if media_file is None:
                raise CommandError(f"unknown file_uuid: {value}")
            if not replace and Trace.objects.filter(file=media_file).exists():
                raise CommandError(f"{media_file.file_uuid} already has traces; use --replace to detect again")
            files.append(media_file)
        progress = options.get("verbosity", 1) >= 1
        for media_file in files:
            try:
                analysis = analyse_video(media_file.path, frame_index_for(media_file), media_file.fps,
                                         stride=stride, progress=progress)
            except (ModelFilesMissing, ModelFileAltered) as exc:
                raise CommandError(str(exc)) from None
            if analysis.frames_decoded != media_file.total_frames:
                raise CommandError(f"{media_file.name}: decoded {analysis.frames_decoded} frames, the frame index "
                                   f"has {media_file.total_frames}; nothing was written")
            try:
                result = store_analysis(media_file, analysis, replace=replace)
            except FacesAlreadyDetected as exc:
                raise CommandError(str(exc)) from None
            if export_dir:
                export_analysis(analysis, media_file, Path(export_dir) / f"{Path(media_file.name).stem}.json")
            speed = (analysis.frames_decoded / media_file.fps) / analysis.seconds if analysis.seconds else 0.0
            kept = f"; {result.bindings_kept} trace(s) kept their person" if replace else ""
            self.stdout.write(
                f"{media_file.file_uuid} {media_file.name}: {result.detections} detections "
                f"({result.tracked} tracked) in {result.traces} traces; {analysis.frames_sampled}/"
                f"{analysis.frames_decoded} frames through the detector (stride {analysis.stride}), scene cuts at "
                f"{analysis.cuts or 'none'}; {analysis.seconds:.1f} s ({speed:.2f}x realtime){kept}"
            )
