"""manage.py detect_faces FILE_UUID… [--stride K] [--replace] [--export-dir DIR] — built-in face analysis."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from media_api.faces.embeddings import ModelFilesMissing
from media_api.faces.pipeline import FaceAnalysis, FacesAlreadyDetected, analyse_video, store_analysis
from media_api.models import MediaFile


def export_analysis(analysis: FaceAnalysis, path: Path) -> None:
    """Write the detections in the spec §7 import format, plus per-trace embeddings."""
    payload = {
        "detections": analysis.rows(),
        "trace_embeddings": {str(k): [round(float(v), 6) for v in vec]
                             for k, vec in analysis.trace_embeddings().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")


class Command(BaseCommand):
    help = "Detect faces (dlib HOG), embed them (dlib ResNet) and follow them into traces; stores detections."

    def add_arguments(self, parser):
        parser.add_argument("file_uuid", nargs="+")
        parser.add_argument("--stride", type=int, default=None,
                            help="detect on every K-th frame (default: about 5 per second)")
        parser.add_argument("--replace", action="store_true",
                            help="delete the file's traces (and their identity bindings) first")
        parser.add_argument("--export-dir", default=None,
                            help="also write <file name>.json in the import format to this directory")

    def handle(self, *args, file_uuid, stride, replace, export_dir, **options):
        if stride is not None and stride < 1:
            raise CommandError("--stride must be at least 1")
        files = []
        for value in file_uuid:
            media_file = MediaFile.objects.filter(file_uuid=value.lower()).first()
            if media_file is None:
                raise CommandError(f"unknown file_uuid: {value}")
            files.append(media_file)
        progress = options.get("verbosity", 1) >= 1
        for media_file in files:
            try:
                analysis = analyse_video(media_file.path, media_file.fps, stride=stride, progress=progress,
                                         total_frames=media_file.total_frames)
            except ModelFilesMissing as exc:
                raise CommandError(str(exc)) from None
            if analysis.frames_decoded != media_file.total_frames:
                raise CommandError(f"{media_file.name}: decoded {analysis.frames_decoded} frames, the frame index "
                                   f"has {media_file.total_frames}; nothing was written")
            try:
                detections, traces = store_analysis(media_file, analysis, replace=replace)
            except FacesAlreadyDetected as exc:
                raise CommandError(str(exc)) from None
            if export_dir:
                export_analysis(analysis, Path(export_dir) / f"{Path(media_file.name).stem}.json")
            fps = analysis.frames_decoded / analysis.seconds if analysis.seconds else 0.0
            self.stdout.write(
                f"{media_file.file_uuid} {media_file.name}: {detections} detections in {traces} traces; "
                f"{analysis.frames_sampled}/{analysis.frames_decoded} frames analysed (stride {analysis.stride}), "
                f"scene cuts at {analysis.cuts or 'none'}; {analysis.seconds:.1f} s ({fps:.1f} frames/s)"
            )
