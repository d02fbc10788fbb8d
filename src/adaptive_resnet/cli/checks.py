"""Checks of command-line values at the boundary, one helper per kind, before any work starts.

Each returns a typer ``callback`` that raises :class:`typer.BadParameter`, which typer prints
as one ``Error: Invalid value for '--opt': ...`` line with exit code 2. ``None`` (an option not
given) passes: its default is the command's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import typer


def number(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Callable:
    """A finite number within the given bounds."""

    def check(value):
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number, got {value}")
        if gt is not None and not value > gt:
            raise typer.BadParameter(f"must be greater than {gt:g}, got {value:g}")
        if ge is not None and not value >= ge:
            raise typer.BadParameter(f"must be at least {ge:g}, got {value:g}")
        if le is not None and not value <= le:
            raise typer.BadParameter(f"must be at most {le:g}, got {value:g}")
        return value

    return check


def numbers(**bounds: float) -> Callable:
    """:func:`number` for each value of a repeatable option."""
    one = number(**bounds)

    def check(values):
        return None if values is None else [one(v) for v in values]

    return check


def existing_file(value: Path | None) -> Path | None:
    """A path naming a readable file."""
    if value is None:
        return value
    if not value.exists():
        raise typer.BadParameter(f"{value} does not exist")
    if not value.is_file():
        raise typer.BadParameter(f"{value} is not a file")
    return value


def output_file(value: Path | None) -> Path | None:
    """A file that can be written: its folder exists and it is not itself a folder."""
    if value is None:
        return value
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; name a file")
    if not value.parent.is_dir():
        raise typer.BadParameter(f"folder {value.parent} does not exist")
    return value


def output_folder(value: Path | None) -> Path | None:
    """A folder that exists or can be made (no file in its place or in its parents')."""
    if value is None:
        return value
    from adaptive_resnet.errors import UserInputError
    from adaptive_resnet.run_folder import check_writable_target

    try:
        check_writable_target(value)
    except UserInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def port(value: int | None) -> int | None:
    """A TCP port (0 picks a free one)."""
    if value is not None and not 0 <= value <= 65535:
        raise typer.BadParameter(f"must be a TCP port 0..65535 (0 picks a free one), got {value}")
    return value
