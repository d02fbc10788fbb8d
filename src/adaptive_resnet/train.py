"""Training and fine-tuning, with checkpoints every epoch and resumption after an interruption.

The paper fine-tuned an ImageNet ResNet-50 on CIFAR-10 upsampled to 224x224 (SGD, momentum 0.9,
lr 0.01, batch 512, 30 epochs); :class:`TrainConfig` defaults to the CIFAR variant that trains on
two CPU cores, and every paper setting is one field away. ``drop_path_rate > 0`` trains
drop-aware (stochastic depth), so that dropping blocks at inference costs little accuracy.

A run lives in one folder: ``config.json`` (the resolved configuration), ``last.pt`` (model,
optimiser, scheduler and RNG state, written atomically after every epoch) and ``history.json``.
With ``swa_start`` the running weight average travels in ``last.pt`` too, and the finished run's
``model`` is the average.
Starting a run in a folder that holds ``last.pt`` resumes it; a folder holding another
configuration is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adaptive_resnet.accelerator import resolve_device
from adaptive_resnet.errors import UserInputError


class TrainConfig(BaseModel):
    """Everything that determines a training run; saved as ``config.json`` beside its checkpoint."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: str = "../shared/data/cifar10"  # ImageFolder root with train/ and test/, or CIFAR-10 batches
    data_format: Literal["auto", "imagefolder", "cifar10"] = "auto"
    arch: str = "resnet50"
    stem: Literal["imagenet", "cifar"] = "cifar"
    base_channels: int = Field(16, ge=1)
    num_classes: int = Field(10, ge=2)
    image_size: int | None = Field(None, ge=8)  # upsample to this size (the paper used 224)
    pretrained: str | None = None  # torchvision weights file to fine-tune from (fc is replaced)
    init_from: str | None = None  # our checkpoint to start from, fc kept: a warm restart, new schedule
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)  # peak learning rate
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    drop_path_rate: float = Field(0.0, ge=0, lt=1)  # stochastic depth (of the last block if linear)
    drop_path_schedule: Literal["linear", "uniform"] = "linear"  # linear in depth (Huang et al.) or equal
    # Stochastic weight averaging (Izmailov et al. 2018): from the end of epoch ``swa_start`` on,
    # the weights are averaged at the end of every epoch, and the run's final model is that
    # average with its batch-norm statistics recomputed. Pair it with a constant ``lr``.
    swa_start: int | None = Field(None, ge=1)
    # An exponential moving average of the weights (and batch-norm statistics), updated every
    # step with this decay (warmed up as min(decay, (1 + t) / (10 + t))); scored every epoch.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # Hold out this many training images (seeded by ``val_seed``, stratified) as a validation
    # split: every epoch is scored on it instead of the test set, which training then never reads.
    val: int = Field(0, ge=0)
    val_seed: int = 0
    # Knowledge distillation from ``teacher`` (a checkpoint of ours): the loss is
    # (1 - alpha) * cross-entropy + alpha * T^2 * KL(teacher_T || student_T), T the temperature.
    teacher: str | None = None
    distill_alpha: float = Field(0.0, ge=0, le=1)
    distill_temperature: float = Field(4.0, gt=0)
    # Which weights the finished run keeps: ``auto`` keeps the candidate (last, ema, swa) with the
    # best validation accuracy when there is a validation split, else the SWA average when there
    # is one, else the last weights.
    keep: Literal["auto", "last", "ema", "swa"] = "auto"
    bf16: bool = True  # bfloat16 autocast (AMX/AVX-512 CPUs train ~2x faster; GPUs more)
    limit_train: int | None = Field(None, ge=1)  # use a random subset (quick runs, tests)
    limit_test: int | None = Field(None, ge=1)
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    device: str = "auto"  # auto (a GPU when there is one), cpu, cuda, cuda:N
    cache_dir: str = "runs/cache"

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.distill_alpha > 0 and not self.teacher:
            raise ValueError("distill_alpha > 0 needs a teacher checkpoint")
        if self.teacher and self.distill_alpha == 0:
            raise ValueError("a teacher is given but distill_alpha is 0 (it would not be used)")
        if self.keep == "ema" and self.ema_decay is None:
            raise ValueError("keep=ema needs ema_decay")
        if self.keep == "swa" and self.swa_start is None:
            raise ValueError("keep=swa needs swa_start")
        if self.swa_start is not None and self.swa_start > self.epochs:
            raise ValueError(f"swa_start {self.swa_start} is after the last epoch ({self.epochs})")
        return self


def build_model(config: TrainConfig, initial_weights: bool = True) -> DroppableResNet:  # noqa: F821
    """The model a config describes, with its starting weights (``pretrained`` or ``init_from``)
    loaded when given and ``initial_weights``; without, the skeleton a checkpoint loads into
    (the files a run started from need not exist where its checkpoint is used)."""
    from torch import nn

    from adaptive_resnet.models import DroppableResNet, load_weights

    if config.pretrained and initial_weights:
        model = DroppableResNet(config.arch, 1000, config.stem, config.base_channels)
        load_weights(model, config.pretrained)
        model.fc = nn.Linear(model.fc.in_features, config.num_classes)
    else:
        model = DroppableResNet(config.arch, config.num_classes, config.stem, config.base_channels)
        if config.init_from and initial_weights:
            load_weights(model, config.init_from)
    model.set_drop_path(config.drop_path_rate, config.drop_path_schedule)
    return model


def build_skeleton(config: TrainConfig) -> DroppableResNet:  # noqa: F821
    """The model a config describes, without storage: parameters and buffers are "meta" tensors
    until ``load_state_dict(..., assign=True)`` hands a part of it its weights."""
    import torch

    with torch.device("meta"):
        return build_model(config, initial_weights=False)


def evaluate(model, data, batch_size: int = 500, image_size: int | None = None, plan=None) -> float:
    """Top-1 accuracy of ``model`` on ``data`` under drop ``plan``, on the model's device."""
    import torch

    from adaptive_resnet.data import batches

    model.eval()
    correct = 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for x, y in batches(data, batch_size, image_size=image_size, device=device):
            correct += int((model(x, plan).argmax(1) == y).sum())
    return correct / len(data)


def _atomic_save(obj: object, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """A checkpoint written by :func:`train`, with a clear error for anything else.

    ``mmap``: tensors map the file instead of being read into memory, so a reader that uses a
    few of them (a worker hosting some blocks) reads and holds only those. A file torch cannot
    map (the legacy, pre-zip format) is read whole.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint not found: {path}")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserInputError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserInputError(f"{path} is not an adaptive-resnet checkpoint (no 'model' and 'config' entries)")
    return ckpt


def checkpoint_config(ckpt: dict, path: str | Path) -> TrainConfig:
    """The training configuration a checkpoint (read by :func:`load_checkpoint`) carries, with a
    one-line error for one this version cannot read (an unknown key, a wrong type)."""
    from pydantic import ValidationError

    from adaptive_resnet.config_errors import validation_message

    if not isinstance(ckpt.get("config"), dict):
        raise UserInputError(f"{path}: its 'config' entry is not a training configuration")
    try:
        return TrainConfig(**ckpt["config"])
    except ValidationError as exc:
        raise UserInputError(f"{path}: its training configuration is not valid: {validation_message(exc)}") from None


def model_from_checkpoint(path: str | Path) -> tuple[DroppableResNet, TrainConfig]:  # noqa: F821
    """Rebuild the model a checkpoint was trained as, with its weights, in eval mode."""
    from adaptive_resnet.models import load_weights

    ckpt = load_checkpoint(path)
    config = checkpoint_config(ckpt, path)
    model = build_model(config, initial_weights=False)
    load_weights(model, path)
    return model.eval(), config


SWA_BN_IMAGES_PER_EPOCH = 10_000  # batch-norm statistics for the per-epoch look at the average


def recompute_batchnorm(model, data, batch_size: int, image_size: int | None, seed: int) -> None:
    """Replace every batch-norm layer's running statistics by their mean over ``data``.

    An average of weights is a new network whose activations no running statistics describe
    (Izmailov et al. 2018, Sec. 3.2): one pass over training images in train mode, with
    cumulative averaging (momentum None) and stochastic depth off, measures them.
    """
    import torch

    from adaptive_resnet.data import batches

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved_momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    drop_path = model.drop_path_probs
    model.drop_path_probs = dict.fromkeys(drop_path, 0.0)
    device = next(model.parameters()).device
    model.train()
    try:
        with torch.no_grad():
            for x, _ in batches(data, batch_size, train=True, seed=seed, image_size=image_size, device=device):
                model(x.contiguous(memory_format=torch.channels_last))
    finally:
        model.drop_path_probs = drop_path
        for m, momentum in zip(norms, saved_momenta):
            m.momentum = momentum
        model.eval()


def _averaged_model(model, average: dict):
    """A copy of ``model`` carrying the averaged parameters (buffers are recomputed after)."""
    import copy

    import torch

    averaged = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in averaged.named_parameters():
            p.copy_(average[name])
    return averaged


def train(config: TrainConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Train (or resume) the run in ``out_dir``; returns the history of per-epoch metrics."""
    import torch
    import torch.nn.functional as F

    from adaptive_resnet.data import batches
    from adaptive_resnet.run_folder import check_writable_target, claim

    out = check_writable_target(out_dir, "run folder")
    ckpt_path, history_path = out / "last.pt", out / "history.json"
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    # Every input is read and checked before the folder is claimed: a mistyped --data or
    # --teacher leaves nothing behind that would refuse the corrected command.
    train_set, eval_set, eval_split = training_data(config)
    if len(train_set.classes) != config.num_classes:
        raise UserInputError(f"data has {len(train_set.classes)} classes but num_classes is {config.num_classes}")
    # The file a run started from is read only when it starts; the teacher also on resume.
    starts = (config.teacher,) if ckpt_path.is_file() else (config.pretrained, config.init_from, config.teacher)
    for start in starts:
        if start and not Path(start).is_file():
            raise UserInputError(f"file not found: {start}")
    # Compared as configs, so that a field added later with a default keeps old runs
    # resumable; fields that do not change the result (threads, device, cache folder) may
    # differ on resume, so a run started on a GPU can be finished on a CPU and back.
    claim(out, config.model_dump(), "training run", ignore=("threads", "cache_dir", "device"),
          normalise=_saved_train_config)
    targets = None
    if config.teacher:
        from adaptive_resnet.distill import teacher_logits

        if progress:
            print(f"teacher logits on {len(train_set)} training images (cached in {config.cache_dir})", flush=True)
        targets = torch.from_numpy(teacher_logits(config.teacher, train_set, config.cache_dir, image_size=config.image_size,
                                                  device=str(device))).to(device)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    # A resumed run takes its weights from last.pt: the file it started from is not read again
    # (and need not exist any more).
    model = build_model(config, initial_weights=not ckpt_path.is_file()).to(device, memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0
    )
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total_steps, pct_start=0.15)
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    history: list[dict] = []
    start_epoch = 0
    swa: dict = {"n": 0, "params": None, "done": False}  # running average of the weights
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        swa = ckpt.get("swa", swa)
        if swa["done"] or ckpt.get("done"):  # finished: its model is the one kept, nothing left to do
            return {"history": ckpt["history"], "checkpoint": str(ckpt_path)}
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        torch.set_rng_state(ckpt["rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, disable=not progress) as bar:
        for epoch in range(start_epoch, config.epochs):
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch, info="")
            model.train()
            t0, seen = time.perf_counter(), 0
            # Running sums stay on the device and are read every few steps: reading them every
            # step would make the host wait for the GPU each time.
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for step, (x, y, idx) in enumerate(
                batches(train_set, config.batch_size, train=True, seed=config.seed * 1000 + epoch, image_size=config.image_size,
                        device=device, with_index=True)
            ):
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                if targets is not None:
                    from adaptive_resnet.distill import distillation_loss

                    kd = distillation_loss(logits.float(), targets[torch.from_numpy(idx).to(device)], config.distill_temperature)
                    loss = (1 - config.distill_alpha) * loss + config.distill_alpha * kd
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                seen += len(y)
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                if step % 20 == 19 or device.type == "cpu":
                    bar.update(task, completed=step + 1, info=f"loss {float(loss_sum) / seen:.3f} acc {int(correct) / seen:.3f}")
            loss_sum, correct = float(loss_sum), int(correct)
            train_s = time.perf_counter() - t0
            eval_acc = evaluate(model, eval_set, image_size=config.image_size)
            history.append(
                {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                 f"{eval_split}_accuracy": eval_acc, "train_s": train_s, "images_per_s": seen / train_s}
            )
            summary = f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} {eval_split} {eval_acc:.4f}"
            if ema is not None:
                history[-1][f"ema_{eval_split}_accuracy"] = evaluate(ema.model_like(model), eval_set, image_size=config.image_size)
                summary += f" ema {history[-1][f'ema_{eval_split}_accuracy']:.4f}"
            if config.swa_start is not None and epoch + 1 >= config.swa_start:
                swa = _swa_step(swa, model)
                averaged = _averaged_model(model, swa["params"])
                bn_set = train_set.subset(min(SWA_BN_IMAGES_PER_EPOCH, len(train_set)), config.seed + epoch)
                recompute_batchnorm(averaged, bn_set, config.batch_size, config.image_size, seed=config.seed + epoch)
                history[-1][f"swa_{eval_split}_accuracy"] = evaluate(averaged, eval_set, image_size=config.image_size)
                history[-1]["swa_models"] = swa["n"]
                summary += f" swa({swa['n']}) {history[-1][f'swa_{eval_split}_accuracy']:.4f}"
                del averaged
            bar.update(task, info=summary)
            if progress and not bar.console.is_terminal:  # a log file: one line per epoch
                print(f"epoch {epoch + 1}/{config.epochs}: {summary} ({seen / train_s:.0f} img/s)", flush=True)
            _atomic_save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "epoch": epoch + 1, "history": history, "rng": torch.get_rng_state(), "config": config.model_dump(),
                 "classes": train_set.classes,
                 "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None, "swa": swa,
                 "ema": ema.state_dict() if ema is not None else None},
                ckpt_path,
            )
            history_path.write_text(json.dumps(history, indent=2) + "\n")
    if swa["n"] or ema is not None:
        # The candidates for the finished model: the last weights, the EMA, and the SWA average
        # with its batch-norm statistics measured on the whole training set (the per-epoch look
        # used a subset). The kept one is written in place of the last SGD weights.
        candidates = {"last": model}
        if ema is not None:
            candidates["ema"] = ema.model_like(model)
        if swa["n"]:
            candidates["swa"] = _averaged_model(model, swa["params"])
            recompute_batchnorm(candidates["swa"], train_set, config.batch_size, config.image_size, seed=config.seed + config.epochs)
        scores = {name: evaluate(m, eval_set, image_size=config.image_size) for name, m in candidates.items()}
        kept = config.keep
        if kept == "auto":
            kept = max(scores, key=scores.get) if config.val else ("swa" if swa["n"] else "last")
        history[-1][f"final_{eval_split}_accuracy"] = scores[kept]
        history[-1]["final_candidates"] = {f"{name}_{eval_split}_accuracy": acc for name, acc in scores.items()}
        history[-1]["kept"] = kept
        if progress:
            listed = ", ".join(f"{name} {acc:.4f}" for name, acc in scores.items())
            print(f"final candidates on {eval_split}: {listed}; kept {kept}", flush=True)
        swa = {"n": swa["n"], "params": None, "done": True}
        _atomic_save(
            {"model": candidates[kept].state_dict(), "epoch": config.epochs, "history": history, "config": config.model_dump(),
             "swa": swa, "done": True, "classes": train_set.classes},
            ckpt_path,
        )
        history_path.write_text(json.dumps(history, indent=2) + "\n")
    return {"history": history, "checkpoint": str(ckpt_path)}


def _saved_train_config(saved: dict) -> dict:
    try:
        return TrainConfig(**saved).model_dump()
    except Exception:  # not a config of ours: compared as it is, and so refused
        return saved


def training_data(config: TrainConfig):
    """(training images, images scored every epoch, that split's name) for ``config``.

    With ``val`` the training split is cut into the part trained on and the held-out
    validation part (:func:`adaptive_resnet.data.validation_split`), and the test split is not
    read at all; without, every epoch is scored on the test split, as before.
    """
    from adaptive_resnet.data import load_images, validation_split

    train_set = load_images(config.data, "train", config.data_format, cache_dir=config.cache_dir)
    if config.val:
        train_idx, val_idx = validation_split(train_set, config.val, config.val_seed)
        eval_set, eval_split = train_set.take(val_idx), "val"
        train_set = train_set.take(train_idx)
    else:
        eval_set, eval_split = load_images(config.data, "test", config.data_format, cache_dir=config.cache_dir), "test"
        if eval_set.classes != train_set.classes:
            # Labels are positions in the sorted class list: a split missing a class (or naming
            # one differently) would score every later class against the wrong label.
            raise UserInputError(f"{config.data}: the test split's classes {eval_set.classes} are not the training "
                                 f"split's {train_set.classes}")
        if config.limit_test:
            eval_set = eval_set.subset(config.limit_test, config.seed)
    if config.limit_train:
        train_set = train_set.subset(config.limit_train, config.seed)
    return train_set, eval_set, eval_split


class EMA:
    """An exponential moving average of a model's parameters and floating buffers (fp32, on the
    model's device), with the usual warm-up so that early steps do not dominate it."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.steps = 0
        self.tensors = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def update(self, model) -> None:
        import torch

        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        state = model.state_dict()
        names = list(self.tensors)
        with torch.no_grad():
            torch._foreach_lerp_([self.tensors[k] for k in names], [state[k].detach().float() for k in names], 1 - decay)

    def model_like(self, model):
        """A copy of ``model`` carrying the averaged weights."""
        import copy

        averaged = copy.deepcopy(model)
        state = averaged.state_dict()
        for k, v in self.tensors.items():
            state[k].copy_(v)
        return averaged.eval()

    def state_dict(self) -> dict:
        return {"decay": self.decay, "steps": self.steps, "tensors": {k: v.cpu() for k, v in self.tensors.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        device = next(iter(self.tensors.values())).device
        self.tensors = {k: v.to(device) for k, v in state["tensors"].items()}


def _swa_step(swa: dict, model) -> dict:
    """``swa`` with ``model``'s current parameters folded into the running mean (on the CPU, fp32)."""
    n = swa["n"] + 1
    current = {name: p.detach().float().cpu() for name, p in model.named_parameters()}
    if swa["params"] is None:
        return {"n": n, "params": {k: v.clone() for k, v in current.items()}, "done": False}
    params = {k: avg + (current[k] - avg) / n for k, avg in swa["params"].items()}
    return {"n": n, "params": params, "done": False}


def export_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """A model-only copy of a checkpoint (weights, config, history), for committing and serving.

    It drops the optimiser, scheduler and RNG state, which only resumption needs: about half
    the size. Every reader of checkpoints accepts it.
    """

    ckpt = load_checkpoint(src)
    slim = {k: ckpt[k] for k in ("model", "config", "history", "epoch", "classes") if k in ckpt}
    slim["model"] = {k: v.float() if v.is_floating_point() else v for k, v in slim["model"].items()}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(slim, dst)
    return dst
