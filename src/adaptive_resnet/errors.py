"""The one exception type for bad user input.

Anything a user can get wrong (a misspelt block name, a weights file for another architecture, a
malformed scenario) raises :class:`UserInputError` with a one-line message that names the problem
and, where there is a finite set, the valid choices. The CLI prints the message and exits with 2;
library callers catch it like any ``ValueError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserInputError(ValueError):
    """Bad input from a user: a one-line message, shown without a traceback."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> UserInputError:
    """An error for ``value`` not among ``choices``, with the nearest match suggested."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(choices) if len(choices) <= 30 else ", ".join(choices[:30]) + ", ..."
    return UserInputError(f"unknown {kind} {value!r}{hint}; valid: {shown}")
