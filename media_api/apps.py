from django.apps import AppConfig


class MediaApiConfig(AppConfig):
    """Files, their frame index, traces, detections and the media routes.

    No model signals on purpose: deleting a file must stay a fast cascade over millions
    of detections. Code that changes detections calls
    ``media_api.services.traces.refresh_trace_summaries`` itself.
    """

    name = "media_api"
    verbose_name = "Media"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Overlay work folders of processes killed mid-render (they could not clean up).
        from media_api.services.streaming import clean_stale_scratch

        try:
            clean_stale_scratch()
        except OSError:  # a read-only or missing data directory must not stop start-up
            pass
