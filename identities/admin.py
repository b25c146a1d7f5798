"""Admin for identities: name people, see their faces, merge with a clear survivor, undo."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from identities import curation, feature_face, names, selectors, services
from identities.models import CurationChange, Identity
from media_api.admin import face_img
from media_api.models import Trace

# The admin is Momentry's, not "Django administration" (every admin page's header and title).
admin.site.site_header = "Momentry"
admin.site.site_title = "Momentry admin"
admin.site.index_title = "Momentry: files, faces and people"


class IdentityForm(forms.ModelForm):
    """Aliases are edited in their own field only; the metadata box shows everything else.

    A name another active person already has is refused until "this is a different person" is
    ticked, so nobody creates a duplicate by accident.
    """

    aliases = forms.CharField(required=False, help_text="Other names, separated by commas.")
    allow_duplicate = forms.BooleanField(
        required=False, label="This is a different person",
        help_text="Tick to keep a name another person already has.")

    class Meta:
        model = Identity
        fields = ["name", "allow_duplicate", "status", "identity_type", "aliases", "metadata"]
        help_texts = {"metadata": "Free JSON (notes, links…). Aliases go in the Aliases field."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["aliases"].initial = ", ".join(self.instance.aliases)
            self.initial["metadata"] = {k: v for k, v in (self.instance.metadata or {}).items() if k != "aliases"}
        self.fields["metadata"].required = False

    def clean_name(self):
        """The one normalisation of every entry point (:mod:`identities.names`)."""
        try:
            return names.clean(self.cleaned_data.get("name") or "")
        except names.InvalidName as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_metadata(self):
        metadata = self.cleaned_data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise forms.ValidationError("Metadata must be a JSON object.")
        if "aliases" in metadata:
            raise forms.ValidationError("Put aliases in the Aliases field above, not in the metadata.")
        return metadata

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name")
        if name and not cleaned.get("allow_duplicate"):
            existing = services.namesake(name, exclude_pk=self.instance.pk)
            if existing is not None:
                url = reverse("admin:identities_identity_change", args=[existing.pk])
                self.add_error("name", forms.ValidationError(format_html(
                    '<a href="{}">{}</a> already has this name. Bind to them, or tick “This is a different '
                    'person”.', url, existing.name)))
        metadata = dict(cleaned.get("metadata") or {})
        aliases = [names.normalise(a) for a in (cleaned.get("aliases") or "").split(",") if names.normalise(a)]
        if aliases:
            metadata["aliases"] = aliases
        cleaned["metadata"] = metadata
        return cleaned


class BoundTraceInline(admin.TabularInline):
    model = Trace
    fk_name = "identity"
    fields = ["face", "trace_link", "file", "span", "face_count", "use_as_face"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "bound traces"

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("file", "identity")

    @admin.display(description="face")
    def face(self, obj: Trace) -> str:
        return face_img(obj.file.file_uuid, obj.trace_id, 64)

    @admin.display(description="trace")
    def trace_link(self, obj: Trace) -> str:
        url = reverse("admin:media_api_trace_change", args=[obj.pk])
        return format_html('<a href="{}">trace {}</a>', url, obj.trace_id)

    @admin.display(description="frames")
    def span(self, obj: Trace) -> str:
        return f"{obj.start_frame}–{obj.end_frame}"

    @admin.display(description="their face")
    def use_as_face(self, obj: Trace) -> str:
        """Choose this trace's face to show the person (a button of the change form posting elsewhere)."""
        if obj.identity is not None and obj.identity.feature_trace_id == obj.pk:
            return format_html('<strong class="momentry-chosen-face">✓ {}</strong>', "their face")
        url = reverse("admin:identities_identity_face", args=[obj.identity_id])
        return format_html('<button type="submit" class="button momentry-use-face" formaction="{}" name="face_trace" '
                           'value="{}" formnovalidate>Use as face</button>', url, obj.pk)


def _top_trace(field: str):
    return Subquery(Trace.objects.filter(identity=OuterRef("pk")).order_by("-face_count", "pk").values(field)[:1])


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    form = IdentityForm
    list_display = ["face", "name", "status", "source", "trace_count", "file_count", "updated_at"]
    list_display_links = ["face", "name"]
    list_filter = ["status", "source"]
    search_fields = ["name"]
    list_per_page = 50
    show_full_result_count = False
    inlines = [BoundTraceInline]
    actions = ["merge_selected"]
    readonly_fields = ["identity_uuid", "source", "created_at", "updated_at", "merged_into"]
    change_form_template = "admin/identities/identity/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            trace_count=Count("traces", distinct=True),
            file_count=Count("traces__file", distinct=True),
            face_trace_id=_top_trace("trace_id"),
            face_file_uuid=_top_trace("file__file_uuid"),
        )

    def get_search_results(self, request, queryset, search_term):
        """Name or an alias (not notes or other metadata). The bind autocomplete offers active people only."""
        if request.path.endswith("/autocomplete/"):
            active = queryset.filter(merged_into__isnull=True).exclude(status=Identity.Status.INACTIVE)
            return selectors.search(active, search_term).order_by("name", "pk"), False  # paginated: a stable order
        return selectors.search(queryset, search_term), False

    @admin.display(description="face")
    def face(self, obj: Identity) -> str:
        if getattr(obj, "face_trace_id", None) is None:
            return "—"
        return format_html('<img src="/api/v1/identity/{}/thumbnail" width="64" height="64" loading="lazy" alt="" '
                           'class="momentry-face" style="border-radius:4px;object-fit:cover;background:#ddd">',
                           obj.identity_uuid)

    @admin.display(description="traces", ordering="trace_count")
    def trace_count(self, obj: Identity) -> int:
        return obj.trace_count

    @admin.display(description="files", ordering="file_count")
    def file_count(self, obj: Identity) -> int:
        return obj.file_count

    change_list_template = "admin/identities/identity/change_list.html"

    def get_urls(self):
        return [
            path("cluster/", self.admin_site.admin_view(self.cluster_view), name="identities_identity_cluster"),
            path("<path:object_id>/undo/", self.admin_site.admin_view(self.undo_view), name="identities_identity_undo"),
            path("<path:object_id>/face/", self.admin_site.admin_view(self.face_view), name="identities_identity_face"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_cluster": self.has_change_permission(request)}
        return super().changelist_view(request, extra_context)

    def cluster_view(self, request):
        """Queue ``cluster_traces`` on the job workers and go to the job."""
        from jobs import services as jobs
        from jobs.models import Job

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        job, created = jobs.submit(Job.Kind.CLUSTER, user=request.user)
        url = reverse("admin:jobs_job_change", args=[job.pk])
        text = "Clustering queued" if created else "Clustering is already queued or running"
        self.message_user(request, format_html('{}: <a href="{}">follow the job</a>.', text, url), messages.SUCCESS)
        return HttpResponseRedirect(url)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        identity = self.get_object(request, object_id)
        if identity is not None:
            extra_context["last_change"] = curation.last_undoable_change(identity)
            extra_context["merged_into"] = identity.merged_into
        return super().change_view(request, object_id, form_url, extra_context)

    def undo_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        identity = get_object_or_404(Identity, pk=object_id)
        change = curation.last_undoable_change(identity)
        if change is None:
            self.message_user(request, "Nothing to undo.", messages.WARNING)
        else:
            try:
                self.message_user(request, curation.undo(change, request.user), messages.SUCCESS)
            except curation.UndoError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:identities_identity_change", args=[identity.pk]))

    def face_view(self, request, object_id):
        """"Use as face" on a bound trace: that trace's face shows the person (recorded, undoable here)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        identity = get_object_or_404(Identity, pk=object_id)
        trace = Trace.objects.select_related("file").filter(pk=request.POST.get("face_trace") or 0,
                                                            identity=identity).first()
        if trace is None:
            self.message_user(request, "Pick one of this person's traces.", messages.ERROR)
        else:
            self.message_user(request, feature_face.choose_face(identity, trace, request.user).summary,
                              messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:identities_identity_change", args=[identity.pk]))

    def delete_view(self, request, object_id, extra_context=None):
        identity = self.get_object(request, object_id)
        if identity is not None:
            extra_context = {**(extra_context or {}),
                             "bound_traces": Trace.objects.filter(identity=identity).count(),
                             "history_url": reverse("admin:identities_curationchange_changelist")}
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        curation.delete_identity(obj, request.user)

    def delete_queryset(self, request, queryset):
        for identity in queryset:
            curation.delete_identity(identity, request.user)

    @admin.action(description="Merge selected identities…", permissions=["change"])
    def merge_selected(self, request, queryset):
        identities = list(queryset.order_by("-trace_count", "name"))
        if len(identities) < 2:
            self.message_user(request, "Select at least two identities to merge.", messages.WARNING)
            return None
        if "confirm" in request.POST:
            survivor = next((i for i in identities if str(i.pk) == request.POST.get("survivor")), None)
            if survivor is None:
                self.message_user(request, "Pick the identity that stays.", messages.ERROR)
            else:
                change = curation.merge_identities(survivor, identities, request.user)
                url = reverse("admin:identities_identity_change", args=[survivor.pk])
                self.message_user(request, format_html('{} — <a href="{}">undo is on {}’s page</a>.', change.summary,
                                                       url, survivor.name), messages.SUCCESS)
                return HttpResponseRedirect(url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Merge identities",
            "opts": self.model._meta,
            "identities": [(i, face_img(i.face_file_uuid, i.face_trace_id, 96) if i.face_trace_id else "")
                           for i in identities],
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return render(request, "admin/identities/identity/merge_intermediate.html", context)


@admin.register(CurationChange)
class CurationChangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "summary", "user", "undone_at"]
    list_filter = ["kind", ("undone_at", admin.EmptyFieldListFilter)]
    search_fields = ["summary", "=identity_uuid"]
    list_select_related = ["user"]
    actions = ["undo_selected"]
    readonly_fields = ["kind", "identity_uuid", "summary", "payload", "user", "created_at", "undone_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the history is what undo needs: nobody deletes it

    def has_change_permission(self, request, obj=None):
        # Read-only pages; the list's undo action needs the change permission itself.
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Undo selected changes", permissions=["change"])
    def undo_selected(self, request, queryset):
        for change in queryset.filter(undone_at__isnull=True).order_by("-created_at"):
            try:
                self.message_user(request, curation.undo(change, request.user), messages.SUCCESS)
            except curation.UndoError as exc:
                self.message_user(request, f"{change.summary}: {exc}", messages.ERROR)
