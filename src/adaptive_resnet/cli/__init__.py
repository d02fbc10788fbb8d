"""Command-line interface: thin typer commands over the library, one module per command."""

from adaptive_resnet.cli import plan, profile, run, serve, simulate, study, train  # noqa: F401  (registers the commands)
from adaptive_resnet.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
