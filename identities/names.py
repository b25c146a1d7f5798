"""One rule for a person's name, whatever the entry point (REST, the admin form, the cast page).

A name is stored **normalised**: Unicode NFC; every run of white space (spaces, tabs, newlines,
no-break spaces, line separators) is one space; no space at either end; zero-width characters
that only hide in copied text (U+200B, U+2060, U+FEFF, U+180E) are dropped, as are a zero-width
joiner or non-joiner (U+200C/U+200D) that are not inside a word — inside one they are part of
the spelling (Persian, Indic scripts, emoji sequences). Any other control or formatting
character — NUL, escape, and above all the direction overrides and isolates (U+202A–U+202E,
U+2066–U+2069, U+200E/U+200F, U+061C) that make a name *display* as something else — is refused
rather than silently dropped: a name that needs them is not a name a curator typed.

Two names are the same person's name when their **keys** are equal: the normalised name,
case-folded (``str.casefold``, so "STRASSE" and "straße" match) and NFC again. The key is stored
on :class:`identities.models.Identity` (``name_key``, indexed), so the duplicate check is one
indexed query on every database, including SQLite whose ``LIKE`` folds ASCII only.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 200
#: Invisible characters dropped wherever they are.
_ZERO_WIDTH = frozenset("\u200b\u2060\ufeff\u180e")
#: Joiners: part of a word's spelling between two word characters, dropped elsewhere.
_JOINERS = frozenset("\u200c\u200d")
_SPACE = re.compile(r"\s+")


class InvalidName(ValueError):
    """The text cannot be a name (empty once normalised, too long, or holding control characters)."""


def _word_character(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMNS"


def _drop_invisible(text: str) -> str:
    kept = []
    for position, ch in enumerate(text):
        if ch in _ZERO_WIDTH:
            continue
        if ch in _JOINERS:
            before = kept[-1] if kept else ""
            after = text[position + 1] if position + 1 < len(text) else ""
            if not (before and after and _word_character(before) and _word_character(after)):
                continue
        kept.append(ch)
    return "".join(kept)


def normalise(text: str) -> str:
    """The stored form of ``text`` (see the module docstring); never raises, may return ""."""
    text = unicodedata.normalize("NFC", text)
    text = _SPACE.sub(" ", _drop_invisible(text)).strip()
    return unicodedata.normalize("NFC", text)


def forbidden(text: str) -> list[str]:
    """Control or formatting characters left in a normalised name, as ``U+XXXX`` (empty: none)."""
    return [f"U+{ord(ch):04X}" for ch in text
            if unicodedata.category(ch) in ("Cc", "Cf") and ch not in _JOINERS]


def clean(value: object) -> str:
    """The normalised name, or :class:`InvalidName` saying what is wrong (for a 400 or a form error)."""
    if not isinstance(value, str):
        raise InvalidName("A name must be text.")
    name = normalise(value)
    if not name:
        raise InvalidName("Type a name.")
    if len(name) > MAX_LENGTH:
        raise InvalidName(f"A name has at most {MAX_LENGTH} characters.")
    bad = forbidden(name)
    if bad:
        raise InvalidName(f"A name cannot hold control or direction-changing characters ({', '.join(bad[:3])}).")
    return name


def key(name: str) -> str:
    """What duplicate names are judged on: the normalised name, case-folded."""
    return unicodedata.normalize("NFC", normalise(name).casefold())
