"""Named people that traces are bound to."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from identities import names
from momentry.nul import nul_path


def new_identity_uuid() -> str:
    return uuid.uuid4().hex


class Identity(models.Model):
    """A named person. ``name`` is a display label, not unique; ``identity_uuid`` is the key."""

    class Source(models.TextChoices):
        AUTO = "auto", "auto"
        USER_DEFINED = "user_defined", "user defined"
        IMPORT = "import", "import"
        MERGED = "merged", "merged"

    class Status(models.TextChoices):
        CONFIRMED = "confirmed", "confirmed"
        PENDING = "pending", "pending"
        INACTIVE = "inactive", "inactive"

    class IdentityType(models.TextChoices):
        PEOPLE = "people", "people"

    identity_uuid = models.CharField(max_length=32, unique=True, default=new_identity_uuid, editable=False)
    name = models.CharField(max_length=200, db_index=True)
    #: ``names.key(name)``: what duplicate names are judged on (set on every save).
    name_key = models.CharField(max_length=200, db_index=True, default="", editable=False)
    identity_type = models.CharField(
        max_length=20, choices=IdentityType.choices, null=True, blank=True, default=IdentityType.PEOPLE
    )
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.USER_DEFINED)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONFIRMED, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )
    #: The face that shows this person (chosen by a curator; None: their trace with the most faces).
    feature_trace = models.ForeignKey("media_api.Trace", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """A NUL character in the metadata (which PostgreSQL cannot store) is a form error, not a 500."""
        where = nul_path(self.metadata, "metadata")
        if where is not None:
            raise ValidationError({"metadata": f"{where}: text must not contain the NUL character (\\u0000)."})

    def save(self, *args, **kwargs) -> None:
        """The name is stored normalised (:mod:`identities.names`) with its duplicate key, whoever saves it."""
        self.name = names.normalise(self.name or "")
        self.name_key = names.key(self.name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "name_key"}
        super().save(*args, **kwargs)

    @property
    def aliases(self) -> list[str]:
        aliases = (self.metadata or {}).get("aliases") or []
        return [str(a) for a in aliases] if isinstance(aliases, list) else []


class CurationChange(models.Model):
    """What a merge, deletion or bulk bind changed, so staff can undo it.

    ``payload`` holds exactly what is needed to put things back: the traces' previous
    identities, the merged identities' previous status/source, a deleted identity's fields.
    """

    class Kind(models.TextChoices):
        MERGE = "merge", "merge"
        DELETE = "delete", "delete"
        BIND = "bind", "bulk bind"
        UNBIND = "unbind", "unbind"
        HIDE = "hide", "hide"
        UNHIDE = "unhide", "unhide"
        SEPARATE = "separate", "not this person"
        FACE = "face", "face chosen"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    identity_uuid = models.CharField(max_length=32, db_index=True, help_text="the identity the change is shown on")
    summary = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["identity_uuid", "-created_at"], name="curation_identity_recent")]

    def __str__(self) -> str:
        return self.summary


class NotSamePerson(models.Model):
    """"Not this person", kept: ``trace`` is not the same person as ``other`` (a trace) or ``identity``.

    Written by the cast page's × (:func:`identities.curation.separate`), recorded as a curation
    change and undone by deleting the rows. The cast page's grouping never puts two such traces in
    one group, suggestions never offer such a person for the trace, and clustering never binds the
    trace to them (:mod:`identities.constraints`).
    """

    trace = models.ForeignKey("media_api.Trace", on_delete=models.CASCADE, related_name="+")
    other = models.ForeignKey("media_api.Trace", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    identity = models.ForeignKey(Identity, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "not-this-person constraint"
        constraints = [models.CheckConstraint(
            condition=models.Q(other__isnull=True, identity__isnull=False)
            | models.Q(other__isnull=False, identity__isnull=True),
            name="not_same_person_one_target")]

    def __str__(self) -> str:
        target = f"trace #{self.other_id}" if self.other_id else f"identity #{self.identity_id}"
        return f"trace #{self.trace_id} is not {target}"
