from django.urls import path, register_converter

from media_api.views import files, images, signing, stream, suggestions, traces
from momentry.converters import TraceIdConverter

register_converter(TraceIdConverter, "trace_id")

urlpatterns = [
    path("files", files.FileListView.as_view(), name="file-list"),
    path("file/<str:file_uuid>", files.FileDetailView.as_view(), name="file-detail"),
    path("file/<str:file_uuid>/traces", traces.TraceListView.as_view(), name="trace-list"),
    path("file/<str:file_uuid>/trace/<trace_id:trace_id>", traces.TraceDetailView.as_view(), name="trace-detail"),
    path("file/<str:file_uuid>/trace/<trace_id:trace_id>/faces", traces.TraceFacesView.as_view(), name="trace-faces"),
    path("file/<str:file_uuid>/trace/<trace_id:trace_id>/suggestions", suggestions.TraceSuggestionsView.as_view(),
         name="trace-suggestions"),
    path("file/<str:file_uuid>/thumbnail", images.FrameThumbnailView.as_view(), name="file-thumbnail"),
    path("file/<str:file_uuid>/trace/<trace_id:trace_id>/thumbnail", images.TraceThumbnailView.as_view(),
         name="trace-thumbnail"),
    path("file/<str:file_uuid>/trace/<trace_id:trace_id>/representative-face", images.RepresentativeFaceView.as_view(),
         name="trace-representative-face"),
    path("file/<str:file_uuid>/video", stream.FileVideoView.as_view(), name="file-video"),
    path("file/<str:file_uuid>/sign", signing.SignView.as_view(), name="file-sign"),
    path("file/<str:file_uuid>/video/bbox", stream.BboxVideoView.as_view(), name="file-video-bbox"),
    path("file/<str:file_uuid>/clip", stream.ClipView.as_view(), name="file-clip"),
    path("file/<str:file_uuid>/trace/<trace_id:trace_id>/video", stream.TraceVideoView.as_view(), name="trace-video"),
]
