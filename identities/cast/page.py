"""The cast page in the admin: name the unnamed faces of one file or of every file, group by group.

Thin views over :mod:`identities.cast.service`. The page (``/admin/cast/`` and
``/admin/cast/<file_uuid>/``) is an admin view: staff only, and the ``view`` permission on
traces to look. Its actions are small JSON endpoints under ``/admin/cast/api/`` that the page's
script calls with the session and the CSRF token; they need the ``change`` permission on traces
and answer every error as the project's JSON envelope (``momentry.errors``), never an HTML page.
Each response carries ``Server-Timing: app;dur=<ms>`` so the browser tests and curators can see
the server's share of a click.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from identities.cast import service
from identities.suggestions import CONFIDENT_DISTANCE, SUGGESTION_MAX_DISTANCE
from media_api.models import MediaFile
from momentry.errors import ApiError, BadRequest, as_api_error, error_response, response_for_api_error

logger = logging.getLogger("momentry.cast")

VIEW = "media_api.view_trace"
CHANGE = "media_api.change_trace"
FILES_LISTED = 200


def _may_view(request: HttpRequest) -> bool:
    return request.user.has_perm(VIEW) or request.user.has_perm(CHANGE)


def _timed(response: HttpResponse, started: float) -> HttpResponse:
    response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def _scope(request: HttpRequest, file_uuid: str | None) -> service.Scope:
    media_file = None
    if file_uuid is not None:
        media_file = MediaFile.objects.filter(file_uuid=file_uuid.lower()).first()
        if media_file is None:
            raise Http404("No such file.")
    scope = service.scope_for(request.user, media_file)
    if media_file is not None and scope.files is not None and media_file.pk not in scope.files:
        raise Http404("No such file.")
    return scope


def _page_number(request: HttpRequest) -> int:
    value = request.GET.get("page", "1")
    return int(value) if value.isdigit() and len(value) < 7 else 1


# --------------------------------------------------------------------------- the page


def cast_view(request: HttpRequest, file_uuid: str | None = None) -> HttpResponse:
    """The page, or one of its parts for the script (``?fragment=body`` or ``named``)."""
    started = time.perf_counter()
    if not _may_view(request):
        raise PermissionDenied
    scope = _scope(request, file_uuid)
    fragment = request.GET.get("fragment")
    show_hidden = request.GET.get("hidden") == "1"
    context: dict[str, Any] = {"can_change": request.user.has_perm(CHANGE), "show_hidden": show_hidden,
                               "media_file": scope.media_file,
                               "thresholds": {"confident": CONFIDENT_DISTANCE, "offered": SUGGESTION_MAX_DISTANCE}}
    if fragment == "named":
        context["named"], context["named_count"] = service.named_people(scope)
        return _timed(render(request, "admin/identities/cast/_named.html", context), started)
    context["cast"] = page = service.cast_page(scope, _page_number(request), show_hidden)
    context["named"], context["named_count"] = page.named, page.named_count
    if fragment == "body":
        return _timed(render(request, "admin/identities/cast/_body.html", context), started)
    files = MediaFile.objects.all() if scope.files is None else MediaFile.objects.filter(pk__in=sorted(scope.files))
    title = f"Cast of {scope.media_file.name}" if scope.media_file else "Cast of every file"
    context.update({
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the grid needs the width
        "title": title,
        "files": list(files.order_by("name", "pk").values_list("file_uuid", "name")[:FILES_LISTED]),
    })
    return _timed(render(request, "admin/identities/cast/page.html", context), started)


# --------------------------------------------------------------------------- JSON endpoints


def _csrf_failure(request: HttpRequest) -> bool:
    """Django's own CSRF check, run here so a failure answers JSON rather than the HTML 403 page."""

    def checked(request: HttpRequest) -> None:  # pragma: no cover - never called, only inspected
        return None

    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, checked, (), {}) is not None


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The body must be JSON.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def endpoint(method: str, permission: str) -> Callable:
    """A JSON action: staff, ``permission``, ``method``, CSRF for POST, errors as the JSON envelope."""

    def decorate(view: Callable[..., dict[str, Any]]) -> Callable[..., HttpResponse]:
        @csrf_exempt  # checked inside, to answer JSON
        @never_cache
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            started = time.perf_counter()
            return _timed(_answer(view, method, permission, request, args, kwargs), started)

        return wrapper

    return decorate


def _answer(view: Callable, method: str, permission: str, request: HttpRequest, args: tuple,
            kwargs: dict) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return error_response(401, "UNAUTHORIZED", "Log in to the admin first.")
    if not (user.is_active and user.is_staff):
        return error_response(403, "FORBIDDEN", "Only staff may use the cast page.")
    if request.method != method:
        return error_response(405, "METHOD_NOT_ALLOWED", f"Use {method}.", headers={"Allow": method})
    if method == "POST" and _csrf_failure(request):
        return error_response(403, "CSRF_FAILED", "The CSRF token is missing or wrong: reload the page.")
    if not user.has_perm(permission):
        return error_response(403, "FORBIDDEN", "You do not have permission to change traces.")
    try:
        body = _body(request) if method == "POST" else {}
        return JsonResponse(view(request, body, *args, **kwargs))
    except Exception as exc:  # every error is JSON: known ones as 4xx/503, the rest as a logged 500
        known = as_api_error(exc)
        if known is not None:
            return response_for_api_error(known)
        if isinstance(exc, Http404):
            return error_response(404, "NOT_FOUND", "Not found.")
        logger.exception("cast page action failed")
        return response_for_api_error(ApiError())


def _request_scope(request: HttpRequest) -> service.Scope:
    return service.scope_for(request.user)


@endpoint("POST", CHANGE)
def api_name(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``{"trace_pks": [...], "name": "…", "allow_duplicate": false}`` → a new person with the group."""
    allow = body.get("allow_duplicate", False)
    if not isinstance(allow, bool):
        raise BadRequest("allow_duplicate must be true or false", param="allow_duplicate")
    outcome = service.name_group(_request_scope(request), body.get("trace_pks"), body.get("name"),
                                 request.user, allow)
    return outcome.as_json()


@endpoint("POST", CHANGE)
def api_bind(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``{"trace_pks": [...], "identity_uuid": "…"}`` → the group bound to that person."""
    return service.bind_group(_request_scope(request), body.get("trace_pks"), body.get("identity_uuid"),
                              request.user).as_json()


@endpoint("POST", CHANGE)
def api_hide(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    return service.hide(_request_scope(request), body.get("trace_pks"), request.user).as_json()


@endpoint("POST", CHANGE)
def api_unhide(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    return service.unhide(_request_scope(request), body.get("trace_pks"), request.user).as_json()


@endpoint("POST", CHANGE)
def api_separate(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``{"trace_pk": pk, "group_pks": [...]}`` → "not this person", kept and undoable."""
    return service.separate(_request_scope(request), body.get("trace_pk"), body.get("group_pks"),
                            request.user).as_json()


@endpoint("POST", CHANGE)
def api_undo(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    return service.undo_last(request.user).as_json()


@endpoint("POST", CHANGE)  # it writes nothing, but it reshuffles every curator's groups
def api_regroup(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    return service.regroup().as_json()


@endpoint("POST", VIEW)
def api_tiles(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``{"trace_pks": [...]}`` → the tiles' HTML (the faces behind "+N more")."""
    tiles = service.tiles(_request_scope(request), body.get("trace_pks"))
    html = render_to_string("admin/identities/cast/_tiles.html",
                            {"tiles": tiles, "can_change": request.user.has_perm(CHANGE)}, request=request)
    return {"success": True, "html": html, "tiles": [tile.as_json() for tile in tiles]}


@endpoint("POST", VIEW)
def api_summary(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``{"groups": [[pk, …], …]}`` → count, screen time and suggestions of each (after "not this person")."""
    groups = body.get("groups")
    if not isinstance(groups, list):
        raise BadRequest("groups must be a list of lists of trace pks", param="groups")
    return {"success": True, "groups": service.summaries(_request_scope(request), groups)}


@endpoint("GET", VIEW)
def api_people(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``?q=…`` → active people whose name or alias contains it (autocomplete)."""
    term = request.GET.get("q", "")
    if len(term) > service.NAME_MAX_LENGTH:
        raise BadRequest("q is too long", param="q")
    return {"success": True, "results": service.autocomplete(term)}
