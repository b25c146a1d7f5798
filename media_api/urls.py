from django.urls import path

from media_api.views import files

urlpatterns = [
    path("file/<str:file_uuid>", files.FileDetailView.as_view(), name="file-detail"),
]
