"""The typer application and the one place where user errors become exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from adaptive_resnet.errors import UserInputError

app = typer.Typer(
    name="adaptive-resnet",
    help="Adaptive ResNet for distributed inference on resource-constrained IoT clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # usage errors as click prints them: one "Error: ..." line, not a box
)
err_console = Console(stderr=True)


def command(name: str | None = None, **kwargs: Any) -> Callable:
    """``app.command`` that turns :class:`UserInputError` into one line and exit code 2."""

    def register(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except UserInputError as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(name, **kwargs)(wrapper)

    return register


@app.callback()
def root() -> None:
    """Adaptive ResNet for distributed inference on resource-constrained IoT clusters."""
