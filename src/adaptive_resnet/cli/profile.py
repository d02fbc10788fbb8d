"""``adaptive-resnet profile``: the per-unit cost table of an architecture."""

from __future__ import annotations

import csv
import io
import json
from enum import Enum

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli.app import command


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


COLUMNS = ("name", "params", "weight_bytes", "macs", "memory_bytes", "output_bytes")


@command("profile")
def profile_cli(
    arch: str = typer.Option("resnet50", help="resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2 or wide_resnet101_2."),
    input_size: int = typer.Option(224, callback=checks.number(le=8192), help="Input height and width in pixels."),
    num_classes: int = typer.Option(1000, callback=checks.number(ge=1, le=1_000_000), help="Classifier size."),
    stem: str = typer.Option("imagenet", help="imagenet (7x7/2 + max-pool) or cifar (3x3/1)."),
    base_channels: int = typer.Option(64, callback=checks.number(ge=1, le=4096), help="Width of the stem and first stage."),
    format: Format = typer.Option(Format.table, "--format", help="Output format."),
) -> None:
    """Per-unit parameters, weight bytes, multiplications (Eq. 2), memory (Eq. 1) and output size."""
    from adaptive_resnet.profile import profile_model

    profile = profile_model(arch, input_size, num_classes, stem, base_channels)
    rows = [{c: getattr(u, c) for c in COLUMNS} for u in profile.units]
    if format is Format.json:
        # Every field, shortcut costs included: a scenario's model.profile reads this back.
        typer.echo(json.dumps(profile.to_dict(), indent=2))
    elif format is Format.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buf.getvalue(), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{arch} at {input_size}x{input_size} (MB = 10^6 bytes)")
        for col in ("unit", "params", "weights MB", "MACs (Eq. 2)", "memory MB (Eq. 1)", "output MB (K_j)"):
            table.add_column(col, justify="left" if col == "unit" else "right", no_wrap=True)
        for u in profile.units:
            table.add_row(
                u.name, f"{u.params:,}", f"{u.weight_bytes / 1e6:.2f}", f"{u.macs:,}",
                f"{u.memory_bytes / 1e6:.2f}", f"{u.output_bytes / 1e6:.3f}",
            )
        table.add_row(
            "total", f"{profile.total('params'):,}", f"{profile.total('weight_bytes') / 1e6:.2f}",
            f"{profile.total('macs'):,}", f"{profile.total('memory_bytes') / 1e6:.2f}", "", style="bold",
        )
        Console(width=max(Console().width, 110)).print(table)  # never truncate numbers
