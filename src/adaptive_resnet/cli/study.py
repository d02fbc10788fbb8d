"""``adaptive-resnet study``: accuracy with single blocks and pairs of blocks dropped."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli.app import command


@command("study")
def study_cli(
    checkpoint: Path = typer.Option(..., callback=checks.existing_file, help="Checkpoint written by `adaptive-resnet train`."),
    out: Path = typer.Option(..., callback=checks.output_folder,
                             help="Folder for study.json, study.csv, pairs.png (and state.json to resume)."),
    data: str = typer.Option("../shared/data/cifar10", help="Data set root; its test split is used (or, with --val, its training split's held-out part)."),
    data_format: str = typer.Option("auto"),
    random_k: list[int] = typer.Option([], callback=checks.numbers(ge=1), help="Also measure random DC drop sets of this size (repeatable)."),
    random_count: int = typer.Option(20, callback=checks.number(ge=1, le=100_000), help="How many random sets per --random-k."),
    limit: int = typer.Option(None, callback=checks.number(ge=1), help="Use a random subset of this many images."),
    batch_size: int = typer.Option(500, callback=checks.number(ge=1, le=100_000)),
    seed: int = typer.Option(0, callback=checks.number(ge=0)),
    val: int = typer.Option(0, callback=checks.number(ge=0),
                            help="Study the N training images `train --val N` held out instead of the test split."),
    val_seed: int = typer.Option(0, callback=checks.number(ge=0), help="The --val-seed of that training run."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
) -> None:
    """Table I and II for a checkpoint: each DC and SC alone, every DC pair, random k-sets."""
    from adaptive_resnet.study import run_study

    doc = run_study(checkpoint, data, out, random_k=random_k, random_count=random_count if random_k else 0,
                    limit=limit, batch_size=batch_size, data_format=data_format, seed=seed, device=device, val=val, val_seed=val_seed)
    full = next(r["accuracy"] for r in doc["rows"] if r["drops"] == "none")
    typer.echo(f"{len(doc['rows'])} drop sets on {doc['n_images']} {doc['split']} images in {doc['study_s']:.1f} s; "
               f"full network {full:.4f}; tables in {out}")
