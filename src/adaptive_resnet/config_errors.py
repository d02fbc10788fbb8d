"""Turn pydantic validation errors into one line that names the field (and the YAML line)."""

from __future__ import annotations

from pydantic import ValidationError


def validation_message(exc: ValidationError, lines: dict[tuple, int] | None = None, source: str = "") -> str:
    """``field.path: message`` for each error, with ``source:line`` when the line is known."""
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        line = None
        if lines:
            for n in range(len(loc), 0, -1):  # the deepest located key that has a line
                if loc[:n] in lines:
                    line = lines[loc[:n]]
                    break
        prefix = f"{source}:{line}: " if line is not None else (f"{source}: " if source else "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{prefix}{where}: {msg}")
    return "; ".join(parts)
