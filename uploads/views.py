"""tus 1.0.0 views (placeholder while the app is built)."""

from rest_framework.views import APIView


class UploadCollectionView(APIView):
    pass


class UploadView(APIView):
    pass
