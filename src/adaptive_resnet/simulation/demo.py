"""The main job behind ``make demo``: every solver and baseline on the paper's cluster."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.simulation.experiments import ALL_SOLVERS, PANELS
from adaptive_resnet.simulation.simulator import SimConfig, simulate


def run_demo(problem, out_dir: str | Path, rounds: int = 8, solvers=ALL_SOLVERS, seed: int = 0, progress: bool = False) -> list[dict]:
    """Simulate ``rounds`` rounds of ``problem``'s scenario per solver on the same draws; summary
    rows, CSV and a bar chart. A demo starts afresh: it replaces only its own earlier output.
    ``progress``: a bar over the solvers' rounds, as they run."""
    from adaptive_resnet.run_folder import check_writable_target

    out = check_writable_target(out_dir)
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.csv").is_file():
        raise UserInputError(f"{out} is not empty and holds no demo (no summary.csv); use a new or empty folder")
    rows = []
    for solver in solvers:
        shutil.rmtree(out / solver, ignore_errors=True)
        result = simulate(problem, SimConfig(rounds=rounds, solver=solver, seed=seed, time_limit_s=0.5), out / solver, progress=progress)
        rows.append({"solver": solver, **result["summary"]})
    fields = [k for k in rows[0] if k != "energy_j_per_device"]
    with (out / "summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, out / "summary.png")
    return rows


def _plot(rows: list[dict], path: Path) -> None:
    """The paper's panels and requests served, a bar per solver, in a 2x3 grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    names = [r["solver"] for r in rows]
    for ax, (key, label, scale) in zip(axes.ravel(), PANELS, strict=True):
        ax.bar(range(len(rows)), [r[key] * scale for r in rows], color=[f"C{k}" for k in range(len(rows))])
        ax.set_xticks(range(len(rows)), names, rotation=30, fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    rounds = rows[0]["rounds"] if rows else 0
    fig.suptitle(f"Every solver on the same {rounds} rounds (one seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
