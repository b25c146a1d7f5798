"""Identity routes, included under /api/v1/ by momentry.urls (path converters: momentry.converters)."""

from django.urls import path

import momentry.converters  # noqa: F401 - registers the path converters (a bad value is a 404)
from identities import face_views, views
from identities.appearance_views import IdentityAppearancesView
from identities.cast import views as cast_views

urlpatterns = [
    path("identities", views.IdentityListView.as_view(), name="identity-list"),
    path("identity/<identity_uuid:identity_uuid>", views.IdentityDetailView.as_view(), name="identity-detail"),
    path("identity/<identity_uuid:identity_uuid>/bind/trace", views.IdentityBindView.as_view(),
         name="identity-bind-trace"),
    path("identity/<identity_uuid:identity_uuid>/unbind/trace", views.IdentityUnbindView.as_view(),
         name="identity-unbind-trace"),
    path("identity/<identity_uuid:identity_uuid>/merge", views.IdentityMergeView.as_view(), name="identity-merge"),
    path("file/<file_uuid:file_uuid>/identities/<identity_uuid:identity_uuid_a>"
         "/co-occur-with/<identity_uuid:identity_uuid_b>",
         views.CooccurrenceView.as_view(), name="identities-cooccurrence"),
    path("identity/<identity_uuid:identity_uuid>/thumbnail", face_views.IdentityThumbnailView.as_view(),
         name="identity-thumbnail"),
    path("identity/<identity_uuid:identity_uuid>/face", face_views.IdentityFaceView.as_view(), name="identity-face"),
    path("identity/<identity_uuid:identity_uuid>/files", views.IdentityFilesView.as_view(), name="identity-files"),
    path("file/<file_uuid:file_uuid>/cooccurrence", cast_views.FileCastGraphView.as_view(), name="file-cooccurrence"),
    path("identity/<identity_uuid:identity_uuid_a>/co-occur-with/<identity_uuid:identity_uuid_b>",
         cast_views.IdentityPairFilesView.as_view(), name="identity-cooccurrence-files"),
    path("identity/<identity_uuid:identity_uuid>/appearances", IdentityAppearancesView.as_view(),
         name="identity-appearances"),
]
