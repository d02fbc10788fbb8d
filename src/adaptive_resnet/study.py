"""The empirical block-drop study (paper, Sec. III, Tables I and II), run on any checkpoint.

For a set of drop plans (the full network, each block's DC and SC alone, every pair of DC
drops, and optionally random k-block sets) it measures top-1 accuracy on a test set, and the
memory and multiplications each plan saves (from the cost profile).

Plans that agree on a prefix of the network share its computation: per batch, the undropped trunk
is run once, and each plan branches off at its first dropped block (then again at its second).
:func:`count_correct` does this; :func:`count_correct_naive` is the plain loop the benchmark
compares it against. The study is resumable at batch granularity: after every batch the counts
so far are written atomically to ``state.json``.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models.naming import Connection, DropPlan, parse_block_name


def study_plans(block_names: Sequence[str], pairs: bool = True, random_k: Sequence[int] = (), random_count: int = 0, seed: int = 0) -> list[DropPlan]:
    """The plans of a study: none; each DC and each SC alone; DC pairs; random DC k-sets."""
    plans = [DropPlan()]
    plans += [DropPlan.of({name: conn}) for name in block_names for conn in Connection]
    if pairs:
        plans += [DropPlan.dc(pair) for pair in itertools.combinations(block_names, 2)]
    rng = random.Random(seed)
    for k in random_k:
        if not 1 <= k <= len(block_names):
            raise UserInputError(f"random k must be between 1 and {len(block_names)}, got {k}")
        drawn: set[DropPlan] = set()
        limit = len(list(itertools.combinations(block_names, k)))
        while len(drawn) < min(random_count, limit):
            drawn.add(DropPlan.dc(rng.sample(list(block_names), k)))
        plans += sorted(drawn, key=str)
    return list(dict.fromkeys(plans))  # unique, order kept


def count_correct_naive(model, x, y, plans: Sequence[DropPlan]) -> list[int]:
    """One full forward pass per plan: the baseline the shared evaluation must match."""
    return [int((model(x, plan).argmax(1) == y).sum()) for plan in plans]


def count_correct(model, x, y, plans: Sequence[DropPlan]) -> list[int]:
    """Correct predictions of each plan on one batch, sharing computation along common prefixes."""
    from adaptive_resnet.models.resnet import run_block

    units = model.unit_names
    position = {name: i for i, name in enumerate(units)}
    for plan in plans:
        model.validate_plan(plan)
    steps = [sorted((position[b], b, c) for b, c in plan.drops) for plan in plans]
    correct = [0] * len(plans)
    empty = DropPlan()

    def walk(h, start: int, members: list[int], depth: int) -> None:
        # ``h`` is the input of unit ``start``; every member has applied its first ``depth`` drops.
        finishing = [m for m in members if depth == len(steps[m])]
        branching: dict[int, dict[tuple[str, Connection], list[int]]] = defaultdict(lambda: defaultdict(list))
        for m in members:
            if depth < len(steps[m]):
                q, name, conn = steps[m][depth]
                branching[q][(name, conn)].append(m)
        last_branch = max(branching, default=-1)
        for q in range(start, len(units)):
            for (name, conn), group in branching.get(q, {}).items():
                walk(run_block(model.block(name), h, conn), q + 1, group, depth + 1)
            if not finishing and q >= last_branch:
                return  # nobody continues on the undropped path
            h = model.run_unit(units[q], h, empty)
        hits = int((h.argmax(1) == y).sum())
        for m in finishing:
            correct[m] = hits

    walk(x, 0, list(range(len(plans))), 0)
    return correct


def run_study(
    checkpoint: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    plans: Sequence[DropPlan] | None = None,
    *,
    random_k: Sequence[int] = (),
    random_count: int = 0,
    limit: int | None = None,
    batch_size: int = 500,
    data_format: str = "auto",
    cache_dir: str = "runs/cache",
    seed: int = 0,
    progress: bool = True,
    device: str = "auto",
    val: int = 0,
    val_seed: int = 0,
) -> dict:
    """Run (or resume) a study of ``checkpoint`` on the test split of ``data_path`` (or, with
    ``val``, on the validation split ``train --val`` holds out of its training split).

    Writes ``study.json`` and ``study.csv`` (one row per plan) and ``pairs.png`` (heatmap) to
    ``out_dir`` and returns the JSON document.
    """
    import torch

    from adaptive_resnet.accelerator import resolve_device
    from adaptive_resnet.data import batches, load_images
    from adaptive_resnet.profile import profile_model
    from adaptive_resnet.run_folder import check_writable_target, claim, write_atomic
    from adaptive_resnet.train import load_checkpoint, model_from_checkpoint

    out = check_writable_target(out_dir, "study folder")
    model, config = model_from_checkpoint(checkpoint)
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        # Full fp32 convolutions (cuDNN would use TF32), so a GPU's table matches a CPU's.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    model.to(torch_device)
    if plans is None:
        plans = study_plans(model.block_names, random_k=random_k, random_count=random_count, seed=seed)
    for plan in plans:
        model.validate_plan(plan)
    if val:
        # The images ``train --val`` held out: the same split of the training images.
        from adaptive_resnet.data import validation_split

        train_images = load_images(data_path, "train", data_format, cache_dir=cache_dir)
        data = train_images.take(validation_split(train_images, val, val_seed)[1])
        split = f"val{val}/seed{val_seed}"
        if (config.val, config.val_seed) != (val, val_seed):
            held = f"held out {config.val} (seed {config.val_seed})" if config.val else "held out none"
            print(f"note: the checkpoint was trained with {held}; its accuracy on this split is not a held-out figure", flush=True)
    else:
        data = load_images(data_path, "test", data_format, cache_dir=cache_dir)
        split = "test"
    if len(data.classes) != config.num_classes:
        raise UserInputError(f"{split} data has {len(data.classes)} classes but the checkpoint was trained for {config.num_classes}")
    trained_classes = load_checkpoint(checkpoint, mmap=True).get("classes")
    if trained_classes is not None and list(trained_classes) != data.classes:
        raise UserInputError(f"the {split} data's classes {data.classes} are not those the checkpoint was trained on {list(trained_classes)}")
    if limit:
        data = data.subset(limit, seed)
    image_size = config.image_size or data.images.shape[1]
    profile = profile_model(config.arch, image_size, config.num_classes, config.stem, config.base_channels)

    identity = {"checkpoint": str(Path(checkpoint).resolve()), "data": str(Path(data_path).resolve()), "split": split,
                "n_images": len(data), "batch_size": batch_size, "plans": [str(p) for p in plans]}
    claim(out, identity, "study")
    state_path = out / "state.json"
    state = {"identity": identity, "batches_done": 0, "correct": [0] * len(plans), "elapsed_s": 0.0}
    if state_path.is_file():
        try:
            saved = json.loads(state_path.read_text())
            if saved.get("identity") == identity and len(saved["correct"]) == len(plans):
                state = saved
        except (ValueError, KeyError, TypeError):
            pass  # damaged: its batches are counted again, never trusted

    n_batches = -(-len(data) // batch_size)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("study", total=n_batches, completed=state["batches_done"])
        with torch.no_grad():
            for b, (x, y) in enumerate(batches(data, batch_size, image_size=config.image_size, device=torch_device)):
                if b < state["batches_done"]:
                    continue
                t0 = time.perf_counter()
                counts = count_correct(model, x, y, plans)
                state["correct"] = [a + c for a, c in zip(state["correct"], counts, strict=True)]
                state["batches_done"] = b + 1
                state["elapsed_s"] += time.perf_counter() - t0
                write_atomic(state_path, json.dumps(state))
                bar.update(task, completed=b + 1)

    rows = []
    for plan, hits in zip(plans, state["correct"], strict=True):
        macs_gain, memory_gain = profile.savings(plan)
        rows.append({"drops": str(plan), "k": len(plan.drops), "accuracy": hits / len(data), "correct": hits, "n": len(data),
                     "memory_gain_bytes": memory_gain, "macs_gain": macs_gain})
    doc = {"arch": config.arch, "stem": config.stem, "base_channels": config.base_channels, "image_size": image_size,
           "checkpoint": identity["checkpoint"], "data": identity["data"], "split": split, "n_images": len(data),
           "study_s": state["elapsed_s"], "rows": rows}
    write_tables(doc, out)
    return doc


def write_tables(doc: dict, out: Path) -> None:
    """``study.json``, ``study.csv`` and the pair heatmap ``pairs.png``."""
    import csv
    import io

    from adaptive_resnet.run_folder import write_atomic

    write_atomic(out / "study.json", json.dumps(doc, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(doc["rows"][0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(doc["rows"])
    write_atomic(out / "study.csv", buf.getvalue())
    plot_pairs(doc, out / "pairs.png")


def plot_pairs(doc: dict, path: Path) -> None:
    """Heatmap of DC-pair accuracies, singles on the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    acc = {}
    for row in doc["rows"]:
        parts = [d.split(":") for d in row["drops"].split("+") if d != "none"]
        if parts and all(c == "DC" for _, c in parts) and len(parts) <= 2:
            names = [n for n, _ in parts]
            acc[tuple(sorted(names))] = row["accuracy"]
    blocks = sorted({n for key in acc for n in key}, key=parse_block_name)
    if not blocks:
        return
    grid = np.full((len(blocks), len(blocks)), np.nan)
    for i, a in enumerate(blocks):
        for j, b in enumerate(blocks):
            key = (a,) if a == b else tuple(sorted((a, b)))
            grid[i, j] = acc.get(key, np.nan) * 100
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(grid, cmap="viridis")
    labels = [n.replace("stage", "s").replace(".block", "b") for n in blocks]
    ax.set_xticks(range(len(blocks)), labels, rotation=90)
    ax.set_yticks(range(len(blocks)), labels)
    fig.colorbar(image, label="top-1 accuracy (%)")
    full = next((r["accuracy"] for r in doc["rows"] if r["drops"] == "none"), float("nan"))
    ax.set_title(f"{doc['arch']} (width {doc['base_channels']}): accuracy with two DCs dropped\n(diagonal: one; full network {full * 100:.2f}%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
