"""The Jobs page: what the workers are doing, have done, and why something failed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from jobs import services
from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "state_badge", "progress_bar", "file", "duration", "attempts", "short_error"]
    list_filter = ["state", "kind"]
    search_fields = ["=id", "file__name", "file__file_uuid", "message"]
    list_select_related = ["file"]
    list_per_page = 50
    readonly_fields = ["id", "kind", "file", "params", "state", "progress", "message", "result", "error",
                       "traceback", "created_by", "created_at", "started_at", "heartbeat_at", "finished_at", "worker",
                       "attempts", "cancel_requested"]
    fields = readonly_fields
    actions = ["cancel_selected"]

    def has_add_permission(self, request):
        return False  # jobs are submitted from the files and identities pages, the API or the commands

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="state", ordering="state")
    def state_badge(self, job: Job) -> str:
        colours = {"queued": "#777", "running": "#2a6fb0", "succeeded": "#2e7d32", "failed": "#c62828",
                   "cancelled": "#8d6e63"}
        return format_html('<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
                           colours.get(job.state, "#777"), job.state)

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, job: Job) -> str:
        percent = round(job.progress * 100)
        return format_html('<progress max="100" value="{}" title="{}"></progress> {}%<br><small>{}</small>', percent,
                           job.message, percent, job.message)

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        if not job.started_at:
            return "—"
        end = job.finished_at or job.heartbeat_at or job.started_at
        return f"{(end - job.started_at).total_seconds():.1f} s"

    @admin.display(description="error")
    def short_error(self, job: Job) -> str:
        return (job.error.splitlines()[0][:120] if job.error else "")

    @admin.display(description="traceback")
    def traceback(self, job: Job) -> str:
        """Where it failed in the server's code: for admins only (API clients get the one-line error)."""
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", job.error_detail) if job.error_detail else "—"

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        cancelled = 0
        for job in queryset:
            try:
                services.cancel(job)
                cancelled += 1
            except services.NotCancellable:
                continue
        self.message_user(request, f"Cancel asked for {cancelled} job(s).", messages.SUCCESS)
