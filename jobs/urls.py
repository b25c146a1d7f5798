"""Job routes, included under /api/v1/ by momentry.urls."""

from django.urls import path

from jobs import views

urlpatterns = [
    path("file/<file_uuid:file_uuid>/detect-faces", views.DetectFacesView.as_view(), name="file-detect-faces"),
    path("file/<file_uuid:file_uuid>/prewarm", views.PrewarmView.as_view(), name="file-prewarm"),
    path("file/<file_uuid:file_uuid>/reembed", views.ReembedView.as_view(), name="file-reembed"),
    path("file/<file_uuid:file_uuid>/detect-shots", views.DetectShotsView.as_view(), name="file-detect-shots"),
    path("identities/cluster", views.ClusterView.as_view(), name="identities-cluster"),
    path("jobs", views.JobListView.as_view(), name="job-list"),
    path("jobs/<str:job_id>", views.JobDetailView.as_view(), name="job-detail"),
]
