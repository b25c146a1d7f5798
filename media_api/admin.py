"""Admin for files, traces and detections: browse traces by face, bind them to people.

Lists stay fast with 100 000 traces: related rows come with ``list_select_related``,
counts are annotated, thumbnails are ``<img loading="lazy">`` tags pointing at the cached
thumbnail route, so the server never renders a face while building a list page.
"""

from __future__ import annotations

import numpy as np
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from identities import cooccurrence, curation, services
from identities.cast import graph as cast_graph
from identities.models import Identity
from identities.suggestions import suggest_identities
from media_api.models import Detection, MediaFile, Trace
from media_api.services import streaming
from media_api.services.traces import refresh_trace_summaries
from momentry import text

DETECTIONS_PER_PAGE = 25
#: People drawn in a file's cast graph and timeline (most screen time first).
CAST_PEOPLE_SHOWN = 30


def trace_thumbnail_url(file_uuid: str, trace_id: int) -> str:
    return f"/api/v1/file/{file_uuid}/trace/{trace_id}/thumbnail"


def face_img(file_uuid: str, trace_id: int, size: int = 64) -> str:
    return format_html(
        '<img src="{}" width="{}" height="{}" loading="lazy" alt="trace {}" class="momentry-face" '
        'style="border-radius:4px;object-fit:cover;background:#ddd">',
        trace_thumbnail_url(file_uuid, trace_id), size, size, trace_id,
    )


@admin.register(MediaFile)
class MediaFileAdmin(admin.ModelAdmin):
    list_display = ["name", "file_uuid", "duration_display", "resolution", "fps_display", "total_frames",
                    "trace_count_link", "identity_count"]
    search_fields = ["name", "=file_uuid"]
    list_filter = ["truncated", "storage", "owned"]
    readonly_fields = ["file_uuid", "name", "path", "storage", "owned", "size_display", "container", "video_codec",
                       "resolution", "fps_display", "total_frames", "completeness", "duration_display", "has_audio",
                       "audio_codec", "created_at",
                       "traces_link", "player", "cast_picture"]
    fields = readonly_fields
    list_per_page = 50
    actions = ["detect_faces", "prewarm_faces", "reembed_faces", "detect_shots"]

    def has_change_permission(self, request, obj=None):
        # Nothing on a file's page is editable (no Save buttons); the list's job actions need the permission.
        return obj is None and super().has_change_permission(request)

    def _queue(self, request, queryset, kind: str, what: str) -> None:
        from jobs import services as jobs

        links = []
        for media_file in queryset:
            job, created = jobs.submit(kind, file=media_file, user=request.user)
            links.append((reverse("admin:jobs_job_change", args=[job.pk]), media_file.name,
                          "queued" if created else "already queued or running"))
        self.message_user(request, format_html("{}: {}", what, format_html_join(
            ", ", '<a href="{}">{}</a> ({})', links)), messages.SUCCESS)

    @admin.action(description="Detect faces (replace the traces; names are kept)", permissions=["change"])
    def detect_faces(self, request, queryset):
        from jobs.models import Job

        self._queue(request, queryset, Job.Kind.DETECT, "Face analysis")

    @admin.action(description="Prewarm faces (best face and thumbnail of every trace)", permissions=["change"])
    def prewarm_faces(self, request, queryset):
        from jobs.models import Job

        self._queue(request, queryset, Job.Kind.PREWARM, "Prewarming")

    @admin.action(description="Re-embed faces (new vectors, current model; traces and names are kept)",
                  permissions=["change"])
    def reembed_faces(self, request, queryset):
        self._queue(request, queryset, "reembed", "Re-embedding")

    @admin.action(description="Detect shots (hard cuts; face analysis finds them too)", permissions=["change"])
    def detect_shots(self, request, queryset):
        self._queue(request, queryset, "detect_shots", "Shot detection")

    @admin.display(description="completeness")
    def completeness(self, obj: MediaFile) -> str:
        """A cut-off file (registered with the frames it has) says so where its frame count is shown."""
        if not obj.truncated:
            return "complete"
        return format_html('<strong style="color:#ba2121">{}</strong>', "; ".join(obj.warnings) or "truncated")

    @admin.display(description="size", ordering="size")
    def size_display(self, obj: MediaFile) -> str:
        return f"{filesizeformat(obj.size)} ({obj.size:,} bytes)"

    @admin.display(description="traces")
    def traces_link(self, obj: MediaFile) -> str:
        url = reverse("admin:media_api_trace_changelist") + f"?file__id__exact={obj.pk}"
        count = obj.traces.count()
        return format_html('<a href="{}">{} of this file</a> · <a href="{}">name the cast of this file</a> '
                           '(face grid)', url, text.count(count, "trace"), reverse("cast-file", args=[obj.file_uuid]))

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            trace_count=Count("traces", distinct=True),
            identity_count=Count("traces__identity", distinct=True),
        )

    def has_add_permission(self, request):
        return False  # files are registered with `manage.py register_file` (probe + frame index)

    # Deleting (the per-file page and the "Delete selected" action) goes through the storage lifecycle, as
    # DELETE /api/v1/file/{uuid} does: rows, this host's cached renders, and the bytes only if owned.
    def delete_model(self, request, obj: MediaFile) -> None:
        self._delete(request, [obj])

    def delete_queryset(self, request, queryset) -> None:
        self._delete(request, list(queryset))

    def _delete(self, request, media_files: list[MediaFile]) -> None:
        from media_api.storage import lifecycle
        from momentry.errors import ApiError

        for media_file in media_files:
            try:
                done = lifecycle.delete_file(media_file)
            except ApiError as exc:  # a job on it is active (409) or the store is down (503)
                self.message_user(request, f"{media_file.name} was not deleted: {exc.message}", messages.ERROR)
                continue
            kept = "its stored video deleted" if done.source == "deleted" else "its video left where it was"
            self.message_user(request, f"{media_file.name} deleted ({kept}).", messages.INFO)

    @admin.display(description="duration", ordering="duration")
    def duration_display(self, obj: MediaFile) -> str:
        return f"{obj.duration:.2f} s"

    @admin.display(description="resolution")
    def resolution(self, obj: MediaFile) -> str:
        return f"{obj.width}×{obj.height}"

    @admin.display(description="fps", ordering="fps")
    def fps_display(self, obj: MediaFile) -> str:
        return f"{obj.fps:.3f} ({obj.fps_rational})"

    @admin.display(description="traces", ordering="trace_count")
    def trace_count_link(self, obj: MediaFile) -> str:
        url = reverse("admin:media_api_trace_changelist") + f"?file__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, text.count(obj.trace_count, "trace"))

    @admin.display(description="identities", ordering="identity_count")
    def identity_count(self, obj: MediaFile) -> int:
        return obj.identity_count

    @admin.display(description="video")
    def player(self, obj: MediaFile) -> str:
        return format_html(
            '<video controls preload="metadata" style="max-width:640px;width:100%" src="/api/v1/file/{}/video">'
            "</video>", obj.file_uuid)

    @admin.display(description="who appears with whom")
    def cast_picture(self, obj: MediaFile) -> str:
        """The cast graph and a timeline strip per person, as inline SVG (identities.cast.graph)."""
        graph = cooccurrence.cast_graph(obj)
        shown = graph.members[:CAST_PEOPLE_SHOWN]  # members are ranked by screen time, and a pair's a < b
        nodes = [cast_graph.Node(m.label, m.screen_seconds) for m in shown]
        among = np.flatnonzero(graph.b < len(shown))
        edges = [cast_graph.Edge(a, b, seconds, frames) for a, b, seconds, frames in zip(
            graph.a[among].tolist(), graph.b[among].tolist(), graph.seconds[among].tolist(),
            graph.frames[among].tolist(), strict=True)]
        strips = [cast_graph.Strip(m.label, m.starts, m.ends) for m in shown]
        hidden = len(graph.members) - len(shown)
        note = f" The {hidden} people with the least screen time are not shown." if hidden > 0 else ""
        return format_html(
            '<div class="momentry-cast">{}<br>{}<p class="help">Named people (bound traces): a circle\'s area is '
            "their screen time, a line's width the time two of them share; the strips show where in the film "
            "each one appears. Unbound traces: <code>GET /api/v1/file/{}/cooccurrence?include_unbound=true</code>."
            "{}</p></div>",
            mark_safe(cast_graph.graph_svg(nodes, edges)),  # noqa: S308 - built by us, every name escaped
            mark_safe(cast_graph.timeline_svg(strips, obj.total_frames, obj.duration)),  # noqa: S308
            obj.file_uuid, note)


class IdentityFilter(admin.SimpleListFilter):
    """Bound / unbound / one identity (the most used ones listed; any id works in the URL)."""

    title = "identity"
    parameter_name = "identity"

    def lookups(self, request, model_admin):
        top = (Identity.objects.filter(traces__isnull=False).annotate(n=Count("traces")).order_by("-n", "name")
               .values_list("pk", "name")[:30])
        return [("unbound", "Unbound"), ("bound", "Bound"), *[(str(pk), name) for pk, name in top]]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "unbound":
            return queryset.filter(identity__isnull=True)
        if value == "bound":
            return queryset.filter(identity__isnull=False)
        if value and value.isdigit():
            return queryset.filter(identity_id=int(value))
        return queryset


class HiddenFilter(admin.SimpleListFilter):
    """Hidden traces ("not a face", from the cast page or the Hide action) are left out unless asked for."""

    title = "hidden"
    parameter_name = "hidden"

    def lookups(self, request, model_admin):
        return [("yes", "Hidden"), ("all", "Shown and hidden")]

    def choices(self, changelist):
        # The default ("Shown") is what the list shows without the parameter.
        yield {"selected": self.value() is None, "display": "Shown",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for lookup, title in self.lookup_choices:
            yield {"selected": self.value() == lookup,
                   "query_string": changelist.get_query_string({self.parameter_name: lookup}), "display": title}

    def queryset(self, request, queryset):
        value = self.value()
        if value == "yes":
            return queryset.filter(ignored=True)
        if value == "all":
            return queryset
        return queryset.filter(ignored=False)


def active_identities():
    """People a trace may be bound to: not merged into someone else, not inactive."""
    return Identity.objects.filter(merged_into__isnull=True).exclude(status=Identity.Status.INACTIVE)


class TraceForm(forms.ModelForm):
    """The trace page: refuses a merged person with a message naming the survivor."""

    class Meta:
        model = Trace
        fields = ["identity"]

    def clean_identity(self):
        identity = self.cleaned_data.get("identity")
        if identity is not None and identity.merged_into_id is not None:
            survivor = identity.merged_into
            raise forms.ValidationError(
                f"{identity.name} was merged into {survivor.name}; pick {survivor.name} instead.")
        return identity


class BindForm(forms.Form):
    identity = forms.ModelChoiceField(
        queryset=active_identities(),
        widget=AutocompleteSelect(Trace._meta.get_field("identity"), admin.site),
        help_text="Type to search by name.",
    )


class NewIdentityForm(forms.Form):
    """A new person's name; a name somebody active already has needs "a different person" ticked."""

    name = forms.CharField(max_length=200, help_text="The person's name as staff should see it.")
    allow_duplicate = forms.BooleanField(required=False, label="This is a different person",
                                         help_text="Tick to create a second person with a name that exists.")

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name")
        existing = services.namesake(name) if name and not cleaned.get("allow_duplicate") else None
        if existing is not None:
            url = reverse("admin:identities_identity_change", args=[existing.pk])
            self.add_error("name", forms.ValidationError(format_html(
                '<a href="{}">{}</a> already exists: use “Bind selected traces to an existing identity” to add '
                "these traces to them, or tick “This is a different person”.", url, existing.name)))
        return cleaned


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    # The identity right after the face: at 1280 px wide it must not be pushed off screen by long file names.
    list_display = ["face", "identity_link", "trace_id", "file_name", "span", "face_count"]
    list_display_links = ["face", "trace_id"]
    list_filter = [IdentityFilter, HiddenFilter, ("file", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["file", "identity"]
    search_fields = ["identity__name", "=trace_id"]
    list_per_page = 50
    show_full_result_count = False
    ordering = ["file_id", "trace_id"]
    actions = ["bind_to_identity", "create_identity", "unbind", "hide", "show_again"]
    autocomplete_fields = ["identity"]
    form = TraceForm
    readonly_fields = ["file", "trace_id", "span", "face_count", "confidence", "ignored", "representative_face",
                       "suggestions", "trace_video", "detections_table"]
    fields = ["identity", *readonly_fields]

    class Media:
        js = ["identities/trace_frames.js"]  # frame links seek the trace video on the page

    def has_add_permission(self, request):
        return False

    @admin.display(description="face")
    def face(self, obj: Trace) -> str:
        return face_img(obj.file.file_uuid, obj.trace_id)

    @admin.display(description="file", ordering="file__name")
    def file_name(self, obj: Trace) -> str:
        return format_html('<span class="momentry-file" title="{}">{}</span>', obj.file.name,
                           Truncator(obj.file.name).chars(28))

    @admin.display(description="average confidence")
    def confidence(self, obj: Trace) -> str:
        return "—" if obj.avg_confidence is None else f"{obj.avg_confidence:.3f}"

    @admin.display(description="frames", ordering="start_frame")
    def span(self, obj: Trace) -> str:
        if obj.start_frame is None:
            return "—"
        return f"{obj.start_frame}–{obj.end_frame}"

    @admin.display(description="identity", ordering="identity__name")
    def identity_link(self, obj: Trace) -> str:
        if obj.identity is None:
            return "—"
        url = reverse("admin:identities_identity_change", args=[obj.identity.pk])
        return format_html('<a href="{}">{}</a>', url, obj.identity.name)

    @admin.display(description="representative face")
    def representative_face(self, obj: Trace) -> str:
        return face_img(obj.file.file_uuid, obj.trace_id, size=320)

    @admin.display(description="looks like")
    def suggestions(self, obj: Trace) -> str:
        """Named people whose traces look like this one (face-embedding distance, nearest first)."""
        if obj.embedding is None:
            return "— (no face embedding: imported detections, or only profile, tiny or unsure faces)"
        found = suggest_identities(obj)
        if not found:
            return "— (nobody named looks like this face yet)"
        by_uuid = Identity.objects.in_bulk([s.identity_uuid for s in found], field_name="identity_uuid")
        items = format_html_join(
            "", '<li class="momentry-suggestion"><a href="{}">{}</a> (distance {})</li>',
            ((reverse("admin:identities_identity_change", args=[by_uuid[s.identity_uuid].pk]), s.name,
              f"{s.distance:.2f}") for s in found if s.identity_uuid in by_uuid),
        )
        return format_html('<ul style="margin:0;padding-left:1.2em">{}</ul><p class="help">Pick one in the '
                           "identity field above to bind this trace.</p>", items)

    @admin.display(description="trace video")
    def trace_video(self, obj: Trace) -> str:
        """The highlight video, its face as poster (no black box before it plays); frame links seek it."""
        return format_html(
            '<video id="momentry-trace-video" controls preload="none" style="max-width:640px;width:100%" '
            'poster="{}" src="/api/v1/file/{}/trace/{}/video"></video>',
            trace_thumbnail_url(obj.file.file_uuid, obj.trace_id), obj.file.file_uuid, obj.trace_id)

    @admin.display(description="detections")
    def detections_table(self, obj: Trace) -> str:
        request = getattr(self, "_request", None)
        page_number = request.GET.get("det_page", 1) if request is not None else 1
        queryset = Detection.objects.filter(trace=obj).order_by("frame_number", "id")
        page = Paginator(queryset, DETECTIONS_PER_PAGE).get_page(page_number)
        # Each frame opens the trace's highlight video (its box drawn) at that frame: the page's
        # player seeks there (identities/static/identities/trace_frames.js); the link works alone too.
        clock = cooccurrence.FrameClock.for_file(obj.file)
        last = len(clock.cumulative) - 1
        video = f"/api/v1/file/{obj.file.file_uuid}/trace/{obj.trace_id}/video#t="
        span = streaming.trace_span(obj.file, obj, streaming.parse_padding({})) if obj.start_frame is not None else None
        origin = clock.at(min(max(span.start_frame, 0), last)) if span is not None else 0.0
        rows = format_html_join(
            "", '<tr><td><a class="momentry-frame" href="{}{}" target="_blank" rel="noopener" '
                'title="play the trace video from this frame">{}</a></td>'
                "<td>{}, {}</td><td>{}×{}</td><td>{}</td><td>{}</td></tr>",
            ((video, f"{max(0.0, clock.at(min(max(d.frame_number, 0), last)) - origin):.3f}", d.frame_number, d.x,
              d.y, d.width, d.height, f"{d.confidence:.3f}", d.label) for d in page),
        )
        nav = []
        if page.has_previous():
            nav.append(format_html('<a href="?det_page={}">‹ previous</a>', page.previous_page_number()))
        nav.append(f"page {page.number} of {page.paginator.num_pages} ({page.paginator.count} detections)")
        if page.has_next():
            nav.append(format_html('<a href="?det_page={}">next ›</a>', page.next_page_number()))
        return format_html(
            '<table><thead><tr><th>frame</th><th>x, y</th><th>size</th><th>confidence</th><th>label</th></tr>'
            "</thead><tbody>{}</tbody></table><p>{}</p>", rows, format_html(" · ".join(["{}"] * len(nav)), *nav))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._request = request
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if change and "identity" in form.changed_data:
            previous = form.initial.get("identity")
            super().save_model(request, obj, form, change)
            if obj.identity_id is None and previous:
                Trace.objects.filter(pk=obj.pk).update(identity_id=previous)
                curation.unbind_traces([obj.pk], request.user)
            elif obj.identity_id is not None:
                Trace.objects.filter(pk=obj.pk).update(identity_id=previous)
                curation.bind_traces(obj.identity, [obj.pk], request.user)
            return
        super().save_model(request, obj, form, change)

    def _selected(self, request: HttpRequest, queryset) -> list[int]:
        return list(queryset.values_list("pk", flat=True))

    def _intermediate(self, request, queryset, title, form, action) -> HttpResponse:
        traces = queryset.select_related("file", "identity")[:200]
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
            "traces": [(t, face_img(t.file.file_uuid, t.trace_id, 96)) for t in traces],
            "count": queryset.count(),
            "action": action,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return render(request, "admin/media_api/trace/bind_intermediate.html", context)

    @admin.action(description="Bind selected traces to an existing identity…", permissions=["change"])
    def bind_to_identity(self, request, queryset):
        form = BindForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            identity = form.cleaned_data["identity"]
            change = curation.bind_traces(identity, self._selected(request, queryset), request.user)
            self.message_user(request, change.summary, messages.SUCCESS)
            return None
        return self._intermediate(request, queryset, "Bind traces to an identity", form, "bind_to_identity")

    @admin.action(description="Create a new identity from selected traces…", permissions=["change"])
    def create_identity(self, request, queryset):
        form = NewIdentityForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            identity, change = curation.create_identity_from_traces(
                form.cleaned_data["name"], self._selected(request, queryset), request.user)
            url = reverse("admin:identities_identity_change", args=[identity.pk])
            self.message_user(request, format_html('Created <a href="{}">{}</a>: {}', url, identity.name,
                                                   change.summary), messages.SUCCESS)
            return None
        return self._intermediate(request, queryset, "Create an identity from traces", form, "create_identity")

    @admin.action(description="Unbind selected traces (not this person)", permissions=["change"])
    def unbind(self, request, queryset):
        changes = curation.unbind_traces(self._selected(request, queryset), request.user)
        count = sum(len(c.payload["traces"]) for c in changes)
        self.message_user(request, f"Unbound {text.count(count, 'trace')}. Undo is on each identity's page.",
                          messages.SUCCESS)

    @admin.action(description="Hide selected traces (not a face)", permissions=["change"])
    def hide(self, request, queryset):
        change = curation.hide_traces(self._selected(request, queryset), request.user)
        self.message_user(request, (f"{change.summary}. They are kept, left out of the cast page and clustering; "
                                    "undo with “Show again” or u on the cast page.") if change
                          else "Those traces were hidden already.", messages.SUCCESS)

    @admin.action(description="Show selected hidden traces again", permissions=["change"])
    def show_again(self, request, queryset):
        change = curation.unhide_traces(self._selected(request, queryset), request.user)
        self.message_user(request, f"{change.summary}." if change else "None of those traces was hidden.",
                          messages.SUCCESS)


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin):
    list_display = ["id", "file", "trace", "frame_number", "x", "y", "width", "height", "confidence", "label"]
    list_select_related = ["file", "trace"]
    raw_id_fields = ["file", "trace"]
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request):
        return False  # detections come from import or face analysis, always with their trace

    def save_model(self, request, obj, form, change):
        old_trace = form.initial.get("trace")
        super().save_model(request, obj, form, change)
        refresh_trace_summaries({obj.trace_id, *([old_trace] if old_trace else [])})

    def delete_model(self, request, obj):
        trace_pk = obj.trace_id
        super().delete_model(request, obj)
        refresh_trace_summaries([trace_pk])

    def delete_queryset(self, request, queryset):
        trace_pks = set(queryset.values_list("trace_id", flat=True))
        super().delete_queryset(request, queryset)
        refresh_trace_summaries(trace_pks)

    def get_search_results(self, request, queryset, search_term):
        if search_term.isdigit():
            return queryset.filter(Q(frame_number=int(search_term))), False
        return queryset, False
