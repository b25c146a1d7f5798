"""File, trace and media routes, included under /api/v1/ by momentry.urls.

Path parameters use the converters of :mod:`momentry.converters` (imported here first, which
registers them): a value that names nothing is the 404 of an unknown file or trace.
"""

from django.urls import path

import momentry.converters  # noqa: F401 - registers <file_uuid:…> and <trace_id:…>
from media_api.views import detections as detection_views
from media_api.views import files, images, signing, stream, suggestions, traces
from media_api.views import search as search_views
from media_api.views import shots as shot_views

FILE = "file/<file_uuid:file_uuid>"
TRACE = FILE + "/trace/<trace_id:trace_id>"

urlpatterns = [
    path("files", files.FileListView.as_view(), name="file-list"),
    path(FILE, files.FileDetailView.as_view(), name="file-detail"),
    path(FILE + "/traces", traces.TraceListView.as_view(), name="trace-list"),
    path(TRACE, traces.TraceDetailView.as_view(), name="trace-detail"),
    path(TRACE + "/faces", traces.TraceFacesView.as_view(), name="trace-faces"),
    path(TRACE + "/suggestions", suggestions.TraceSuggestionsView.as_view(), name="trace-suggestions"),
    path(FILE + "/thumbnail", images.FrameThumbnailView.as_view(), name="file-thumbnail"),
    path(TRACE + "/thumbnail", images.TraceThumbnailView.as_view(), name="trace-thumbnail"),
    path(TRACE + "/representative-face", images.RepresentativeFaceView.as_view(), name="trace-representative-face"),
    path(FILE + "/video", stream.FileVideoView.as_view(), name="file-video"),
    path(FILE + "/sign", signing.SignView.as_view(), name="file-sign"),
    path(FILE + "/video/bbox", stream.BboxVideoView.as_view(), name="file-video-bbox"),
    path(FILE + "/clip", stream.ClipView.as_view(), name="file-clip"),
    path(TRACE + "/video", stream.TraceVideoView.as_view(), name="trace-video"),
    path(FILE + "/shots", shot_views.FileShotsView.as_view(), name="file-shots"),
    path(FILE + "/detections", detection_views.FileDetectionsView.as_view(), name="file-detections"),
    path("faces/search", search_views.FaceSearchView.as_view(), name="faces-search"),
]
