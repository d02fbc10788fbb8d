"""``adaptive-resnet train``: train or fine-tune, resumable, one folder per run."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli.app import command


@command("train")
def train_cli(
    out: Path = typer.Option(..., callback=checks.output_folder, help="Run folder: config.json, last.pt, history.json. Reused to resume."),
    data: str = typer.Option("../shared/data/cifar10", help="ImageFolder root (train/, test/) or CIFAR-10 batches."),
    data_format: str = typer.Option("auto", help="auto, imagefolder or cifar10."),
    arch: str = typer.Option("resnet50"),
    stem: str = typer.Option("cifar", help="cifar (3x3/1, no max-pool) or imagenet."),
    base_channels: int = typer.Option(16),
    num_classes: int = typer.Option(10),
    image_size: int = typer.Option(None, help="Upsample inputs to this size (the paper used 224)."),
    pretrained: str = typer.Option(None, help="torchvision weights file to fine-tune from."),
    init_from: str = typer.Option(None, help="Checkpoint of ours to start from (same model): a warm restart with a new schedule."),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(0.1, help="Peak learning rate."),
    momentum: float = typer.Option(0.9),
    weight_decay: float = typer.Option(5e-4),
    schedule: str = typer.Option("onecycle", help="onecycle, cosine or constant."),
    label_smoothing: float = typer.Option(0.0),
    drop_path_rate: float = typer.Option(0.0, help="Stochastic depth of the last block (drop-aware training)."),
    drop_path_schedule: str = typer.Option("linear", help="linear (grows with depth) or uniform."),
    swa_start: int = typer.Option(None, help="Average the weights from the end of this epoch on (SWA); the final model is the average."),
    ema_decay: float = typer.Option(None, help="Keep an exponential moving average of the weights with this per-step decay (e.g. 0.999)."),
    val: int = typer.Option(0, help="Hold out this many training images (stratified, seeded by --val-seed) and score every epoch on them; the test split is then never read."),
    val_seed: int = typer.Option(0),
    teacher: str = typer.Option(None, help="Checkpoint of ours to distil from (its logits on the training images are cached)."),
    distill_alpha: float = typer.Option(0.0, help="Weight of the distillation loss (0..1); needs --teacher."),
    distill_temperature: float = typer.Option(4.0),
    keep: str = typer.Option("auto", help="Weights the finished run keeps: auto (best on the validation split), last, ema or swa."),
    bf16: bool = typer.Option(True, help="bfloat16 autocast."),
    limit_train: int = typer.Option(None, help="Train on a random subset of this many images."),
    limit_test: int = typer.Option(None, help="Test on a random subset of this many images."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(None),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N; may change on resume."),
) -> None:
    """Train the droppable ResNet; a checkpoint every epoch; re-run the same command to resume."""
    from pydantic import ValidationError

    from adaptive_resnet.config_errors import validation_message
    from adaptive_resnet.errors import UserInputError
    from adaptive_resnet.train import TrainConfig, train

    values = {k: v for k, v in locals().items() if k not in ("out", "ValidationError", "validation_message", "UserInputError", "TrainConfig", "train")}
    try:
        config = TrainConfig(**values)
    except ValidationError as exc:
        raise UserInputError(validation_message(exc)) from None
    result = train(config, out)
    last = result["history"][-1]
    split = "val" if config.val else "test"
    accuracy = last.get(f"final_{split}_accuracy", last[f"{split}_accuracy"])  # the kept model's
    kept = f" ({last['kept']} weights)" if "kept" in last else ""
    typer.echo(f"epoch {last['epoch']}: {split} accuracy {accuracy:.4f}{kept}; checkpoint {result['checkpoint']}")
