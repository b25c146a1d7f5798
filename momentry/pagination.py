"""Query-parameter parsing and page slicing shared by the list routes.

Every list answers ``{success, count, total, page, page_size, num_pages, <items>}``:
``count`` = items on this page, ``total`` = items matching. A page past the end is an
empty list (not an error), so a client can loop until ``count == 0``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter

from momentry.errors import BadRequest

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_parameters(default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE,
                    items: str = "items") -> list[OpenApiParameter]:
    """The OpenAPI ``page`` and ``page_size`` of a list; a list of small rows may allow larger pages."""
    return [
        OpenApiParameter("page", {"type": "integer", "minimum": 1}, OpenApiParameter.QUERY,
                         description="1-based page number (default 1); a page past the end is an empty list"),
        OpenApiParameter("page_size", {"type": "integer", "minimum": 1, "maximum": maximum}, OpenApiParameter.QUERY,
                         description=f"{items} per page, 1..{maximum} (default {default})"),
    ]


PAGE_PARAMETERS = page_parameters()


# What a query string may spell a number as: ASCII digits (Python's int() and float() would also
# take "1_000", " 5", "٥" or "nan").
INTEGER = re.compile(r"-?[0-9]+")
NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _bounded(name: str, raw: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if minimum is not None and maximum is not None:
            bounds = f"between {minimum} and {maximum}"
        else:
            bounds = f"at least {minimum}" if minimum is not None else f"at most {maximum}"
        raise BadRequest(f"{name} must be {bounds}", param=name, value=raw)


def int_param(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    """An integer query parameter; ``default`` when absent or empty, a 400 naming it when malformed or out of range."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str) or not INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer", param=name, value=raw)
    value = int(raw)
    _bounded(name, raw, value, minimum, maximum)
    return value


def number_param(params: Mapping[str, str], name: str, default: float, minimum: float | None = None,
                 maximum: float | None = None) -> float:
    """A finite number query parameter, like :func:`int_param`."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str) or not NUMBER.fullmatch(raw) or not math.isfinite(value := float(raw)):
        raise BadRequest(f"{name} must be a number", param=name, value=raw)
    _bounded(name, raw, value, minimum, maximum)
    return value


def bool_param(params: Mapping[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    # Exactly the schema's boolean (any case, so that Python's True is understood); "1", "yes"...
    # are refused rather than guessed at.
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise BadRequest(f"{name} must be true or false", param=name, value=raw)


def choice_param(params: Mapping[str, str], name: str, choices: list[str], default: str | None) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of: {', '.join(choices)}", param=name, value=raw, allowed=choices)
    return raw


@dataclass(frozen=True)
class Page:
    page: int
    page_size: int

    @classmethod
    def from_params(cls, params: Mapping[str, str], default: int = DEFAULT_PAGE_SIZE,
                    maximum: int = MAX_PAGE_SIZE) -> Page:
        """The page asked for (400s naming the parameter); sizes as :func:`page_parameters` states them."""
        return cls(
            page=int_param(params, "page", 1, 1),
            page_size=int_param(params, "page_size", default, 1, maximum),
        )

    def slice(self, queryset: QuerySet | list, total: int) -> list:
        start = (self.page - 1) * self.page_size
        if start >= total:
            return []
        return list(queryset[start : start + self.page_size])

    def envelope(self, key: str, items: list[Any], total: int) -> dict[str, Any]:
        return {
            "success": True,
            "count": len(items),
            "total": total,
            "page": self.page,
            "page_size": self.page_size,
            "num_pages": math.ceil(total / self.page_size) if total else 0,
            key: items,
        }


def paginate(queryset: QuerySet, params: Mapping[str, str], key: str, serialize) -> dict[str, Any]:
    """Validate page params, count, slice and serialize: two queries whatever the size."""
    page = Page.from_params(params)
    total = queryset.count()
    return page.envelope(key, [serialize(obj) for obj in page.slice(queryset, total)], total)
