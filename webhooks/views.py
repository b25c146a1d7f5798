"""Webhooks over REST (admin role only): create (the secret is shown once), list, read, change, delete,
and each webhook's delivery attempts. Thin over webhooks.services.

Admin role: a staff user whose view is not limited to some files (events carry every file's jobs);
changes through an API key also need the key's write permission. Anyone else gets a 403 on every
route — the collection is an admin tool, so its existence is no secret — and an unknown (or
malformed) webhook id is a 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import permissions, serializers
from rest_framework import serializers as S
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from media_api import selectors
from momentry.bodies import validated
from momentry.converters import canonical_uuid
from momentry.errors import BadRequest, Conflict, NotFound
from momentry.models import APIKey
from momentry.pagination import PAGE_PARAMETERS, Page, choice_param, paginate
from momentry.parsers import BoundedJSONParser
from momentry.schema import ERROR, UUID_PATTERN, StrictBooleanField, StrictCharField, page_of, success
from webhooks import addresses, services
from webhooks.events import EVENTS
from webhooks.models import Delivery, Webhook

STATUSES = [s.value for s in Delivery.Status]


def is_webhook_admin(request: Request) -> bool:
    user, auth = request.user, request.auth
    if not (user and user.is_authenticated and getattr(user, "is_staff", False)):
        return False
    if selectors.is_scoped(user, auth):
        return False
    if request.method in permissions.SAFE_METHODS:
        return True
    return auth.can_write if isinstance(auth, APIKey) else True  # an admin's session or JWT may change them


class IsWebhookAdmin(permissions.BasePermission):
    message = ("Webhooks need the admin role (a staff user not limited to some files; "
               "changes through an API key need write permission).")

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # 401
        if not hasattr(view, request.method.lower()):
            return True  # the route's 405
        return is_webhook_admin(request)


def serialize_webhook(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.pk.hex,
        "url": webhook.url,
        "events": webhook.events,
        "description": webhook.description,
        "active": webhook.active,
        "created_at": webhook.created_at.isoformat(),
        "deliveries_url": f"/api/v1/webhooks/{webhook.pk.hex}/deliveries",
    }


def serialize_delivery(delivery: Delivery) -> dict[str, Any]:
    def when(value):
        return value.isoformat() if value else None

    return {
        "id": delivery.pk,
        "event_id": delivery.event_id,
        "event": delivery.event,
        "attempt": delivery.attempt,
        "status": delivery.status,
        "status_code": delivery.status_code,
        "error": delivery.error or None,
        "response_body": delivery.response_body,
        "duration_ms": delivery.duration_ms,
        "scheduled_at": when(delivery.scheduled_at),
        "attempted_at": when(delivery.attempted_at),
        "next_retry_at": when(delivery.next_retry_at),
        "payload": delivery.payload,
    }


# --------------------------------------------------------------------------- OpenAPI shapes

_WEBHOOK_FIELDS = {
    "id": S.CharField(help_text="32 hex characters"),
    "url": S.CharField(),
    "events": S.ListField(child=S.ChoiceField(EVENTS)),
    "description": S.CharField(),
    "active": S.BooleanField(),
    "created_at": S.DateTimeField(),
    "deliveries_url": S.CharField(),
}
WEBHOOK = inline_serializer("Webhook", _WEBHOOK_FIELDS)
WEBHOOK_CREATED = success("WebhookCreated", {"webhook": inline_serializer("NewWebhook", {
    **_WEBHOOK_FIELDS,
    "secret": S.CharField(help_text="whsec_…: signs every delivery (Momentry-Signature). Shown only here: keep it"),
})})
WEBHOOK_DETAIL = success("WebhookDetail", {"webhook": WEBHOOK})
WEBHOOK_PAGE = page_of("WebhookPage", "webhooks", WEBHOOK)
WEBHOOK_DELETED = success("WebhookDeleted", {"id": S.CharField(), "deleted": S.BooleanField()})
DELIVERY = inline_serializer("WebhookDelivery", {
    "id": S.IntegerField(),
    "event_id": S.CharField(help_text="evt_…, the same in every attempt (header Momentry-Event-Id)"),
    "event": S.ChoiceField(EVENTS),
    "attempt": S.IntegerField(help_text="1 for the first try"),
    "status": S.ChoiceField(STATUSES, help_text="pending (scheduled), sending, succeeded (2xx), failed"),
    "status_code": S.IntegerField(allow_null=True, help_text="the receiver's HTTP status"),
    "error": S.CharField(allow_null=True, help_text="why the attempt failed, in one line"),
    "response_body": S.CharField(help_text="the first 1 KB of the receiver's answer"),
    "duration_ms": S.IntegerField(allow_null=True),
    "scheduled_at": S.DateTimeField(),
    "attempted_at": S.DateTimeField(allow_null=True),
    "next_retry_at": S.DateTimeField(allow_null=True, help_text="a failed attempt that will be retried: when"),
    "payload": S.DictField(help_text="the JSON body sent: {id, type, created, data}"),
})
DELIVERY_PAGE = page_of("WebhookDeliveryPage", "deliveries", DELIVERY, webhook_id=S.CharField())
FORBIDDEN = OpenApiResponse(ERROR, description="FORBIDDEN: not an admin (staff, not limited to some files; "
                                               "changes through an API key need write permission)")
WEBHOOK_ID = OpenApiParameter("webhook_id", {"type": "string", "pattern": UUID_PATTERN}, OpenApiParameter.PATH,
                              description="The webhook: 32 lowercase hex characters (else a 404).")


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": addresses.URL_PATTERN,
                      "description": "https:// (or http://) address of a public host (its addresses are checked: "
                                     "loopback, private, link-local and reserved ones are a 400)"})
class WebhookUrlField(StrictCharField):
    """The receiver's URL: its form here, its host's addresses by webhooks.addresses (a 400 either way)."""


class WebhookCreateSerializer(serializers.Serializer):
    url = WebhookUrlField(max_length=2000, min_length=1)
    events = serializers.ListField(child=serializers.ChoiceField(EVENTS), min_length=1, max_length=len(EVENTS),
                                   help_text="the events to receive")
    description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    active = StrictBooleanField(required=False, default=True)


class WebhookUpdateSerializer(WebhookCreateSerializer):
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    active = StrictBooleanField(required=False)


# --------------------------------------------------------------------------- views


def _webhook(webhook_id: str) -> Webhook:
    cleaned = canonical_uuid(str(webhook_id))
    webhook = Webhook.objects.filter(pk=cleaned).first() if cleaned else None
    if webhook is None:
        raise NotFound("Webhook not found.", {"webhook_id": webhook_id})
    return webhook


def _checked_url(url: str) -> str:
    try:
        addresses.check(url)
    except addresses.Refused as exc:
        raise BadRequest(f"url: {exc}", param="url") from None
    return url.strip()


class WebhookBase(APIView):
    permission_classes = [IsWebhookAdmin]
    parser_classes = [BoundedJSONParser]


class WebhookListView(WebhookBase):
    @extend_schema(operation_id="webhooks_list", summary="Webhooks, newest first (admin)",
                   parameters=PAGE_PARAMETERS, responses={200: WEBHOOK_PAGE, 403: FORBIDDEN}, tags=["webhooks"])
    def get(self, request: Request) -> Response:
        return Response(paginate(Webhook.objects.order_by("-created_at", "id"), request.query_params, "webhooks",
                                 serialize_webhook))

    @extend_schema(operation_id="webhooks_create",
                   summary="Subscribe a URL to events (admin); the answer holds the signing secret, shown once",
                   request=WebhookCreateSerializer,
                   responses={201: WEBHOOK_CREATED, 403: FORBIDDEN,
                              409: OpenApiResponse(ERROR, description=f"CONFLICT: already {services.MAX_WEBHOOKS} "
                                                                      "webhooks")},
                   tags=["webhooks"])
    def post(self, request: Request) -> Response:
        data = validated(WebhookCreateSerializer, request)
        try:
            webhook = services.create_webhook(**data, user=request.user)
        except addresses.Refused as exc:
            raise BadRequest(f"url: {exc}", param="url") from None
        except services.TooMany as exc:
            raise Conflict(str(exc)) from None
        return Response({"success": True, "webhook": {**serialize_webhook(webhook), "secret": webhook.secret}},
                        status=201)


class WebhookDetailView(WebhookBase):
    @extend_schema(operation_id="webhook_detail", summary="One webhook (admin; the secret is not shown again)",
                   parameters=[WEBHOOK_ID], responses={200: WEBHOOK_DETAIL, 403: FORBIDDEN}, tags=["webhooks"])
    def get(self, request: Request, webhook_id: str) -> Response:
        return Response({"success": True, "webhook": serialize_webhook(_webhook(webhook_id))})

    @extend_schema(operation_id="webhook_update", summary="Change the URL, events, description or active flag (admin)",
                   parameters=[WEBHOOK_ID], request=WebhookUpdateSerializer,
                   responses={200: WEBHOOK_DETAIL, 403: FORBIDDEN}, tags=["webhooks"])
    def patch(self, request: Request, webhook_id: str) -> Response:
        webhook = _webhook(webhook_id)
        data = validated(WebhookUpdateSerializer, request, partial=True)
        if "url" in data:
            data["url"] = _checked_url(data["url"])
        if "events" in data:
            data["events"] = list(dict.fromkeys(data["events"]))
        for field, value in data.items():
            setattr(webhook, field, value)
        if data:
            webhook.save(update_fields=list(data))
        return Response({"success": True, "webhook": serialize_webhook(webhook)})

    @extend_schema(operation_id="webhook_delete",
                   summary="Delete the webhook and its delivery records; attempts not yet made are dropped (admin)",
                   parameters=[WEBHOOK_ID], responses={200: WEBHOOK_DELETED, 403: FORBIDDEN}, tags=["webhooks"])
    def delete(self, request: Request, webhook_id: str) -> Response:
        webhook = _webhook(webhook_id)
        ident = webhook.pk.hex
        webhook.delete()
        return Response({"success": True, "id": ident, "deleted": True})


class WebhookDeliveriesView(WebhookBase):
    @extend_schema(operation_id="webhook_deliveries",
                   summary="Every delivery attempt of the webhook, newest first (admin)",
                   parameters=[WEBHOOK_ID,
                               OpenApiParameter("status", OpenApiTypes.STR, enum=STATUSES),
                               OpenApiParameter("event", OpenApiTypes.STR, enum=list(EVENTS)),
                               OpenApiParameter("event_id", {"type": "string", "pattern": "^evt_[0-9a-f]{32}$"},
                                                description="all attempts of one event"),
                               *PAGE_PARAMETERS],
                   responses={200: DELIVERY_PAGE, 403: FORBIDDEN}, tags=["webhooks"])
    def get(self, request: Request, webhook_id: str) -> Response:
        webhook = _webhook(webhook_id)
        params = request.query_params
        status = choice_param(params, "status", STATUSES, None)
        event = choice_param(params, "event", list(EVENTS), None)
        Page.from_params(params)
        deliveries = webhook.deliveries.order_by("-created_at", "-id")
        if status:
            deliveries = deliveries.filter(status=status)
        if event:
            deliveries = deliveries.filter(event=event)
        if params.get("event_id"):
            deliveries = deliveries.filter(event_id=params["event_id"])
        return Response({"webhook_id": webhook.pk.hex,
                         **paginate(deliveries, params, "deliveries", serialize_delivery)})
