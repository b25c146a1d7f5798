"""Registered video files, their frame index, traces and detections."""

from __future__ import annotations

from fractions import Fraction

from django.db import models


class MediaFile(models.Model):
    """A registered video. ``file_uuid`` = first 32 hex chars of the content's SHA-256."""

    file_uuid = models.CharField(max_length=32, unique=True)
    path = models.TextField()
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    mtime = models.FloatField(default=0.0)
    container = models.CharField(max_length=64)
    video_codec = models.CharField(max_length=32)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    fps_num = models.PositiveIntegerField()
    fps_den = models.PositiveIntegerField()
    fps = models.FloatField()
    total_frames = models.PositiveIntegerField()
    duration = models.FloatField()
    has_audio = models.BooleanField(default=False)
    audio_codec = models.CharField(max_length=32, blank=True, default="")
    # The file ends before the duration its container declares (a cut-off download or copy):
    # its frames up to the cut are served, and ``warnings`` says how much is missing.
    truncated = models.BooleanField(default=False)
    warnings = models.JSONField(default=list, blank=True)
    # Where the bytes are (issue 21): "local" (``path`` is a file on this host) or "s3" (``path`` is
    # ``s3://bucket/key``, read with ranged requests). ``owned``: the service stored the bytes itself
    # (an upload), so deleting the file deletes them; a file registered from someone else's path or
    # bucket is never deleted there.
    storage = models.CharField(max_length=8, choices=[("local", "local"), ("s3", "S3")], default="local")
    owned = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.file_uuid[:8]})"

    @property
    def object_url(self) -> str:
        """``s3://bucket/key`` of a stored object ("" for a local file)."""
        return self.path if self.storage == "s3" else ""

    @property
    def fps_rational(self) -> str:
        return f"{self.fps_num}/{self.fps_den}"

    @property
    def fps_fraction(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)


class FrameIndex(models.Model):
    """Presentation timestamp of every frame and which frames are keyframes.

    Stored as two compressed arrays on one row per file (not a row per frame): ``pts`` is
    int64 in stream time base, in presentation order; ``keyframes`` holds the frame numbers
    of keyframes as int32. Built once at registration by demuxing packets.
    """

    file = models.OneToOneField(MediaFile, on_delete=models.CASCADE, related_name="frame_index")
    stream_index = models.PositiveIntegerField(default=0)
    time_base_num = models.PositiveIntegerField()
    time_base_den = models.PositiveIntegerField()
    pts = models.BinaryField()
    keyframes = models.BinaryField()

    def __str__(self) -> str:
        return f"frame index of {self.file_id}"


class Trace(models.Model):
    """Detections of one person followed across frames of one file.

    The summary fields and ``presence`` are derived from the detections and kept right by
    :func:`media_api.services.traces.refresh_trace_summaries`; ``detections_version``
    changes whenever the detections do, which invalidates the cached representative face.
    """

    file = models.ForeignKey(MediaFile, on_delete=models.CASCADE, related_name="traces")
    trace_id = models.IntegerField()
    identity = models.ForeignKey(
        "identities.Identity", null=True, blank=True, on_delete=models.SET_NULL, related_name="traces"
    )
    face_count = models.PositiveIntegerField(default=0)
    start_frame = models.IntegerField(null=True, blank=True)
    end_frame = models.IntegerField(null=True, blank=True)
    avg_confidence = models.FloatField(null=True, blank=True)
    detections_version = models.PositiveIntegerField(default=1)
    # Cached representative face (valid while rep_version == detections_version).
    rep_version = models.PositiveIntegerField(null=True, blank=True)
    rep_frame_number = models.IntegerField(null=True, blank=True)
    rep_x = models.IntegerField(null=True, blank=True)
    rep_y = models.IntegerField(null=True, blank=True)
    rep_width = models.IntegerField(null=True, blank=True)
    rep_height = models.IntegerField(null=True, blank=True)
    rep_confidence = models.FloatField(null=True, blank=True)
    rep_quality_score = models.FloatField(null=True, blank=True)
    rep_blur_score = models.FloatField(null=True, blank=True)
    embedding = models.BinaryField(null=True, blank=True)
    #: Which network made ``embedding`` (``media_api.faces.embeddings.MODEL_NAME`` for new ones; "" when there
    #: is none). Vectors of two models are never compared.
    embedding_model = models.CharField(max_length=64, blank=True, default="")
    #: The trace's evidence: up to ``embeddings.MAX_EXEMPLARS`` unit vectors of its best, most different faces
    #: (packed little-endian float32, 128 each, best first; same model as ``embedding``, which is their
    #: quality-weighted mean). Suggestions compare these sets (media_api.faces.exemplars); null: only the mean.
    exemplars = models.BinaryField(null=True, blank=True, editable=False)
    # The frames holding a detection of this trace, as a compressed run list (format and why:
    # media_api.services.presence); null when it has none. Derived like the summary fields.
    presence = models.BinaryField(null=True, blank=True, editable=False)
    # "Hide / not a face": kept with its detections, but left out of clustering, the cast page's
    # groups and suggestions' evidence until un-hidden (identities.curation.hide_traces, undoable).
    ignored = models.BooleanField("hidden", default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["file_id", "trace_id"]
        constraints = [models.UniqueConstraint(fields=["file", "trace_id"], name="trace_unique_per_file")]
        indexes = [
            models.Index(fields=["file", "identity"], name="trace_file_identity"),
            models.Index(fields=["identity", "file"], name="trace_identity_file"),
            models.Index(fields=["file", "face_count"], name="trace_file_face_count"),
            models.Index(fields=["file", "start_frame"], name="trace_file_start"),
            # Hidden traces are few: a partial index lists and counts them without touching the rest.
            models.Index(fields=["file", "trace_id"], condition=models.Q(ignored=True), name="trace_ignored"),
        ]

    def __str__(self) -> str:
        return f"trace {self.trace_id}"

    @property
    def has_current_representative(self) -> bool:
        return self.rep_version is not None and self.rep_version == self.detections_version


class Detection(models.Model):
    """One bounding box on one frame, in display pixels (top-left origin).

    ``origin`` says where the box comes from: a detector run on that frame, or the tracker
    following a detected face onto the frames between detector samples.
    """

    class Origin(models.IntegerChoices):
        DETECTED = 0, "detected"
        TRACKED = 1, "tracked"

    file = models.ForeignKey(MediaFile, on_delete=models.CASCADE, related_name="detections")
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="detections")
    frame_number = models.IntegerField()
    x = models.IntegerField()
    y = models.IntegerField()
    width = models.IntegerField()
    height = models.IntegerField()
    confidence = models.FloatField()
    label = models.CharField(max_length=32, default="face")
    origin = models.PositiveSmallIntegerField(choices=Origin.choices, default=Origin.DETECTED)

    class Meta:
        ordering = ["frame_number", "id"]
        indexes = [
            models.Index(fields=["file", "frame_number"], name="det_file_frame"),
            models.Index(fields=["trace", "frame_number"], name="det_trace_frame"),
        ]

    def __str__(self) -> str:
        return f"detection {self.id} @ {self.frame_number}"


class Shot(models.Model):
    """One shot of a file: frames ``start_frame..end_frame`` (inclusive) between two hard cuts.

    Found by :class:`media_api.faces.cuts.SceneCutDetector`, either during face analysis (which
    needs the cuts anyway: nobody is followed across one) or by the ``detect_shots`` job for a file
    without faces (:mod:`media_api.services.shots`). A file's shots cover all its frames, in order,
    ``index`` 0, 1, …; a file with no rows has not been analysed (one shot = no cut found).
    """

    file = models.ForeignKey(MediaFile, on_delete=models.CASCADE, related_name="shots")
    index = models.PositiveIntegerField()
    start_frame = models.PositiveIntegerField()
    end_frame = models.PositiveIntegerField()

    class Meta:
        ordering = ["file_id", "index"]
        # The unique constraint is the (file, index) index the shots route reads in order.
        constraints = [models.UniqueConstraint(fields=["file", "index"], name="shot_unique_per_file")]

    def __str__(self) -> str:
        return f"shot {self.index} ({self.start_frame}-{self.end_frame})"
