"""The REST field for a person's name or alias: what :mod:`identities.names` accepts, checked and described.

The check is the names module's (``NameField`` only trims and bounds the length; the services normalise and
refuse); the OpenAPI pattern says the same thing to clients, so a fuzzer or a generated client reading the
schema sends no name the API refuses. Here, not in the platform's ``momentry.schema``: the platform knows
no domain app.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

from drf_spectacular.utils import extend_schema_field

from identities import names
from momentry.schema import STRIPPED, StrictCharField, character_class


@functools.cache
def name_pattern(max_length: int = names.MAX_LENGTH) -> str:
    """What :func:`identities.names.clean` accepts, as a pattern (the REST names and aliases).

    White space anywhere (runs become one space, the ends are trimmed), the invisible characters
    it drops anywhere, and at least one character that stays; never another control or formatting
    character (NUL, escape, direction overrides...). The length is bounded between the first and
    the last kept character (the normalised name is never longer).
    """
    zero_width, joiners = names._ZERO_WIDTH, names._JOINERS
    dropped = STRIPPED + character_class(sorted(map(ord, zero_width)))
    joining = character_class(sorted(map(ord, joiners)))
    forbidden = character_class([
        code for code in range(0x110000)
        if unicodedata.category(chr(code)) in ("Cc", "Cf") and not chr(code).isspace()
        and chr(code) not in zero_width and chr(code) not in joiners
    ])
    kept = f"[^{dropped}{joining}{forbidden}]"
    return rf"^[{dropped}{joining}]*{kept}(?:[^{forbidden}]{{0,{max_length - 2}}}{kept})?[{dropped}{joining}]*$"


@extend_schema_field({"type": "string", "pattern": name_pattern(),
                      "description": "1..200 characters once spaces are trimmed (runs of white space become one "
                                     "space, zero-width characters are dropped); no control or direction-changing "
                                     "characters"})
class NameField(StrictCharField):
    """A name or alias: trimmed, not blank, at most 200 characters once trimmed (identities.names has the rule).

    The length is checked here rather than with ``max_length``, which would put a ``maxLength``
    of the untrimmed string into the schema.
    """

    MAX_LENGTH = names.MAX_LENGTH

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if len(value) > self.MAX_LENGTH:
            self.fail("max_length", max_length=self.MAX_LENGTH)
        return value
