"""Side-by-side comparison of drop studies with the paper's tables: markdown and a plot.

Also measures how good the singles-and-pairs estimate of g(y) is: for every k-block set a study
measured (``--random-k``), the estimate built from that study's singles and pairs is compared
with the measurement.
"""

from __future__ import annotations

import json
from pathlib import Path

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.models.naming import DropPlan, parse_block_name


def load_rows(path: str | Path) -> dict[str, float]:
    return {r["drops"]: r["accuracy"] for r in json.loads(Path(path).read_text())["rows"]}


def estimate_error(study_path: str | Path) -> dict:
    """Estimate vs measurement on the study's k >= 3 sets, using only its singles and pairs."""
    rows = load_rows(study_path)
    small = {DropPlan.parse(k): v for k, v in rows.items() if k.count("+") <= 1}
    full = rows["none"]
    table = AccuracyTable(full, {p: v for p, v in small.items() if p}, name=str(study_path))
    errors = []
    for key, measured in rows.items():
        plan = DropPlan.parse(key)
        if len(plan.drops) >= 3:
            est = table.accuracy(plan)
            if est is not None:
                errors.append({"drops": key, "measured": measured, "estimated": est.value, "error": est.value - measured})
    abs_err = sorted(abs(e["error"]) for e in errors)
    return {"n": len(errors), "mean_abs_error": sum(abs_err) / len(abs_err) if abs_err else None,
            "max_abs_error": abs_err[-1] if abs_err else None, "sets": errors}


def _identity(block: str) -> bool:
    """An identity block (not a stage's first, whose projection shortcut changes the shape)."""
    return not block.endswith("block1")


def robustness(study_path: str | Path) -> dict:
    """What dropping blocks costs a network, from its study: the full network's accuracy, the
    worst identity block's DC alone and the mean and worst pair of identity DCs (losses in
    accuracy, 0-1), and each first block's DC alone (reported apart: the issue's targets are on
    identity blocks, and a first block's projection must then carry everything)."""
    rows = load_rows(study_path)
    full = rows["none"]
    singles = {k.split(":")[0]: v for k, v in rows.items() if k.count("+") == 0 and k.endswith(":DC")}
    identity = {b: v for b, v in singles.items() if _identity(b)}
    pairs = [v for k, v in rows.items() if k.count("+") == 1 and all(d.endswith(":DC") and _identity(d.split(":")[0]) for d in k.split("+"))]
    worst = min(identity, key=identity.get) if identity else None
    return {"full": full, "worst_single": worst, "worst_single_loss": full - identity[worst] if worst else None,
            "pairs": len(pairs), "mean_pair_loss": full - sum(pairs) / len(pairs) if pairs else None,
            "worst_pair_loss": full - min(pairs) if pairs else None,
            "first_blocks": {b: v for b, v in singles.items() if not _identity(b)}}


def robustness_markdown(studies: dict[str, str | Path]) -> str:
    """:func:`robustness` of each study as a table row, in points (accuracy in %)."""
    lines = ["| network | full | worst identity single (loss) | mean pair loss | worst pair loss | first blocks' DC alone |",
             "|---|---|---|---|---|---|"]
    for name, path in studies.items():
        r = robustness(path)
        first = ", ".join(f"{b.split('.')[0]} {v * 100:.2f}" for b, v in sorted(r["first_blocks"].items(), key=lambda kv: parse_block_name(kv[0])))
        lines.append(f"| {name} | {r['full'] * 100:.2f} | {r['worst_single']} ({r['worst_single_loss'] * 100:.2f}) | "
                     f"{r['mean_pair_loss'] * 100:.2f} | {r['worst_pair_loss'] * 100:.2f} | {first} |")
    return "\n".join(lines)


def comparison_markdown(studies: dict[str, str | Path]) -> str:
    """Single-DC accuracies (paper Table II where it has them) and pair statistics, per study."""
    paper = AccuracyTable.paper()
    loaded = {name: load_rows(p) for name, p in studies.items()}
    blocks = sorted({k.split(":")[0] for rows in loaded.values() for k in rows if k.count("+") == 0 and k != "none"},
                    key=parse_block_name)
    head = "| block (DC dropped) | paper (Table II) | " + " | ".join(loaded) + " |"
    lines = [head, "|" + "---|" * (2 + len(loaded))]
    full_row = "| none (full network) | 94.73 | " + " | ".join(f"{rows['none'] * 100:.2f}" for rows in loaded.values()) + " |"
    lines.append(full_row)
    for b in blocks:
        p = paper.measured.get(DropPlan.dc([b]))
        cells = [f"{rows[f'{b}:DC'] * 100:.2f}" if f"{b}:DC" in rows else "" for rows in loaded.values()]
        paper_cell = f"{p * 100:.2f}" if p is not None else ""
        lines.append(f"| {b} | {paper_cell} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| pairs of identity-block DCs | " + " | ".join(loaded) + " |")
    lines.append("|---|" + "---|" * len(loaded))
    stats = {}
    for name, rows in loaded.items():
        full = rows["none"]
        drops = [full - v for k, v in rows.items() if k.count("+") == 1 and all(_identity(d.split(":")[0]) for d in k.split("+"))]
        stats[name] = drops
    lines.append("| pairs | " + " | ".join(str(len(v)) for v in stats.values()) + " |")
    lines.append("| mean loss (points) | " + " | ".join(f"{100 * sum(v) / len(v):.2f}" if v else "" for v in stats.values()) + " |")
    lines.append("| worst loss (points) | " + " | ".join(f"{100 * max(v):.2f}" if v else "" for v in stats.values()) + " |")
    lines.append("| pairs within 3 points | " + " | ".join(f"{sum(d <= 0.03 for d in v)}/{len(v)}" if v else "" for v in stats.values()) + " |")
    return "\n".join(lines)


def plot_singles(studies: dict[str, str | Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paper = AccuracyTable.paper()
    loaded = {name: load_rows(p) for name, p in studies.items()}
    blocks = sorted({k.split(":")[0] for rows in loaded.values() for k in rows if k.count("+") == 0 and k != "none"},
                    key=parse_block_name)
    x = np.arange(len(blocks))
    width = 0.8 / (len(loaded) + 1)
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.bar(x, [paper.measured.get(DropPlan.dc([b]), np.nan) * 100 for b in blocks], width, label="paper (Table II, ResNet-50@224)")
    for n, (name, rows) in enumerate(loaded.items(), start=1):
        ax.bar(x + n * width, [rows.get(f"{b}:DC", np.nan) * 100 for b in blocks], width, label=name)
    ax.set_xticks(x + width * len(loaded) / 2, [b.replace("stage", "s").replace(".block", "b") for b in blocks], rotation=60)
    ax.set_ylabel("top-1 accuracy (%) with this block's DC dropped")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
