"""Words shown to people (admin messages, change summaries)."""

from __future__ import annotations


def count(number: int, singular: str, plural: str | None = None) -> str:
    """``count(1, "trace")`` → ``"1 trace"``; ``count(3, "identity", "identities")`` → ``"3 identities"``."""
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"
