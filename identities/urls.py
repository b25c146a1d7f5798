"""Identity routes, included under /api/v1/ by momentry.urls."""

from django.urls import path

from identities import cast_views, views

urlpatterns = [
    path("identities", views.IdentityListView.as_view(), name="identity-list"),
    path("identity/<str:identity_uuid>", views.IdentityDetailView.as_view(), name="identity-detail"),
    path("identity/<str:identity_uuid>/bind/trace", views.IdentityBindView.as_view(), name="identity-bind-trace"),
    path("identity/<str:identity_uuid>/unbind/trace", views.IdentityUnbindView.as_view(),
         name="identity-unbind-trace"),
    path("identity/<str:identity_uuid>/merge", views.IdentityMergeView.as_view(), name="identity-merge"),
    path("file/<str:file_uuid>/identities/<str:identity_uuid_a>/co-occur-with/<str:identity_uuid_b>",
         views.CooccurrenceView.as_view(), name="identities-cooccurrence"),
    path("identity/<str:identity_uuid>/files", views.IdentityFilesView.as_view(), name="identity-files"),
    path("file/<str:file_uuid>/cooccurrence", cast_views.FileCastGraphView.as_view(), name="file-cooccurrence"),
    path("identity/<str:identity_uuid_a>/co-occur-with/<str:identity_uuid_b>",
         cast_views.IdentityPairFilesView.as_view(), name="identity-cooccurrence-files"),
]
