"""/api/v1/uploads (tus creation, OPTIONS) and /api/v1/uploads/{id} (HEAD, PATCH, DELETE, GET)."""

from django.urls import path

from uploads import views

urlpatterns = [
    path("uploads", views.UploadCollectionView.as_view(), name="uploads"),
    path("uploads/<str:upload_id>", views.UploadView.as_view(), name="upload"),
]
