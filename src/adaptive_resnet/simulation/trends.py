"""The paper's claimed trends (Figs. 6-9) against the measured ones, as a table written from results.

For every panel of an experiment the paper claims a direction (from its Section V text, quoted
in :data:`CLAIMS`). The measured trend of a solver is the least-squares slope of the panel's
metric against the swept parameter, one slope per seed, and their mean with a 95% confidence
interval: rising where the whole interval is above 0, falling where it is below, flat
otherwise, and flat too where the change over the sweep (slope x its span) is under
``MIN_CHANGE`` of the metric's mean: accuracy falling by 0.15 points over Fig. 8's sweep is
not the paper's "highest accuracy at the lowest rate". A claim is reproduced where the measured
direction is the claimed one.
"""

from __future__ import annotations

import csv
from pathlib import Path

from adaptive_resnet.simulation.stats import mean_ci

# (experiment, metric, claimed direction: +1 rising / -1 falling, the paper's words)
CLAIMS = (
    ("fig6", "accuracy", -1, "6a: lowest accuracy at alpha = 1"),
    ("fig6", "latency_mean_s", -1, "6b: alpha = 1 needs fewer resources (latency prioritised)"),
    ("fig6", "shared_mb", -1, "6c: fewer resources at alpha = 1 (shared data)"),
    ("fig6", "energy_j", -1, "6d: fewer resources at alpha = 1 (energy)"),
    ("fig6", "gmacs", -1, "6e: fewer resources at alpha = 1 (computational load)"),
    ("fig7", "accuracy", +1, "7a: accuracy increases with capacity (less dropping)"),
    ("fig7", "latency_mean_s", -1, "7b: latency decreases"),
    ("fig7", "shared_mb", -1, "7c: shared data decreases"),
    ("fig7", "gmacs", -1, "7d: computational load decreases"),
    ("fig7", "energy_j", -1, "7e: energy decreases"),
    # The paper does not say whether 7c-e are totals or per request; with more battery more
    # requests are served, so the totals rise: the per-request reading is measured too.
    ("fig7", "shared_mb/served", -1, "7c per served request"),
    ("fig7", "gmacs/served", -1, "7d per served request"),
    ("fig7", "energy_j/served", -1, "7e per served request"),
    ("fig8", "accuracy", -1, "8a: highest accuracy (no drops) at the lowest rate"),
    ("fig8", "latency_mean_s", +1, "8b: latency increases with lambda"),
    ("fig8", "shared_mb", +1, "8c: shared data increases"),
    ("fig8", "energy_j", +1, "8d: energy increases"),
    ("fig8", "gmacs", +1, "8e: computational load increases"),
    ("fig9", "accuracy", +1, "9a: higher compute limit, higher accuracy"),
    ("fig9", "latency_mean_s", +1, "9b: latency lowest at the lowest compute (more downsizing)"),
    ("fig9", "shared_mb", -1, "9c: shared data highest when compute is low"),
    ("fig9", "energy_j", +1, "9d: energy lowest at the lowest compute"),
    ("fig9", "shared_mb/served", -1, "9c per served request"),
    ("fig9", "energy_j/served", +1, "9d per served request"),
)
DIRECTION = {1: "rising", -1: "falling", 0: "flat"}
MIN_CHANGE = 0.02  # a trend changes its metric by at least 2% of the metric's mean over the sweep


def value_of(row: dict, metric: str) -> float:
    """A row's ``metric``, or a ratio of two of its columns ("energy_j/served"; 0 where the
    divisor is 0)."""
    if "/" not in metric:
        return float(row[metric])
    top, bottom = metric.split("/")
    return float(row[top]) / float(row[bottom]) if float(row[bottom]) else 0.0


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def measured_trends(points_csv: str | Path, solvers: tuple[str, ...] = ("exact", "fast", "paper")) -> list[dict]:
    """For each claim of the experiment in ``points_csv`` (its per-seed rows) and each solver in
    it: the slope's mean and 95% CI over seeds, the measured direction and whether it is the
    claimed one. fig6 sweeps (alpha, threshold): slopes against alpha, per threshold."""
    from adaptive_resnet.simulation.experiments import _parse_value, x_of

    with open(points_csv) as fh:
        rows = [r for r in csv.DictReader(fh) if r["seed"].lstrip("-").isdigit()]
    if not rows:
        return []
    name = rows[0]["experiment"]
    out = []
    for exp, metric, claimed, words in CLAIMS:
        if exp != name:
            continue
        for solver in [s for s in solvers if any(r["solver"] == s for r in rows)]:
            mine = [r for r in rows if r["solver"] == solver]
            groups = sorted({v[1] if isinstance(v, tuple) else None for v in (_parse_value(r["value"]) for r in mine)},
                            key=lambda g: (g is None, g))
            for group in groups:
                slopes, values, xs = [], [], []
                for seed in sorted({r["seed"] for r in mine}, key=int):
                    pts = [(x_of(_parse_value(r["value"])), value_of(r, metric)) for r in mine if r["seed"] == seed
                           and (group is None or _parse_value(r["value"])[1] == group)]
                    slopes.append(slope([p[0] for p in pts], [p[1] for p in pts]))
                    values += [p[1] for p in pts]
                    xs += [p[0] for p in pts]
                mean, low, high = mean_ci(slopes)
                change = mean * (max(xs) - min(xs))
                level = abs(sum(values) / len(values))
                sign = 1 if low > 0 else -1 if high < 0 else 0
                if abs(change) < MIN_CHANGE * level:
                    sign = 0
                out.append({"experiment": exp, "metric": metric, "group": group, "solver": solver, "claim": words,
                            "claimed": DIRECTION[claimed], "slope": mean, "ci95_low": low, "ci95_high": high,
                            "change": change, "relative_change": change / level if level else 0.0,
                            "measured": DIRECTION[sign], "reproduced": sign == claimed, "seeds": len(slopes)})
    return out


def trend_table(results: dict[str, list[dict]]) -> str:
    """Markdown: one row per claim, group and solver, a column pair per reading (``results``:
    reading -> :func:`measured_trends` rows of every experiment), and the count reproduced."""
    readings = list(results)
    keys = list(dict.fromkeys((r["experiment"], r["metric"], r["group"], r["solver"], r["claim"], r["claimed"])
                              for rows in results.values() for r in rows))
    by = {reading: {(r["experiment"], r["metric"], r["group"], r["solver"]): r for r in rows} for reading, rows in results.items()}
    head = "| figure | panel (the paper's claim) | claimed | solver | " + " | ".join(
        f"{reading}: slope (95% CI) | {reading}: reproduced" for reading in readings) + " |"
    lines = [head, "|" + "---|" * (4 + 2 * len(readings))]
    for exp, metric, group, solver, words, claimed in keys:
        cells = []
        for reading in readings:
            r = by[reading].get((exp, metric, group, solver))
            cells += ["-", "-"] if r is None else [
                f"{r['measured']}: {r['slope']:+.3g} ({r['ci95_low']:+.3g}, {r['ci95_high']:+.3g}), {r['relative_change']:+.1%} over the sweep",
                "yes" if r["reproduced"] else "no"]
        label = exp + ("" if group is None else f" (threshold {group:g})")
        lines.append(f"| {label} | {words} | {claimed} | {solver} | " + " | ".join(cells) + " |")
    lines.append("")
    for reading, rows in results.items():
        for solver in dict.fromkeys(r["solver"] for r in rows):
            mine = [r for r in rows if r["solver"] == solver]
            lines.append(f"- {reading}, {solver}: {sum(r['reproduced'] for r in mine)} of {len(mine)} claimed trends reproduced")
    return "\n".join(lines) + "\n"


START, END = "<!-- trend table: generated by `adaptive-resnet trends`; do not edit -->", "<!-- end of trend table -->"


def write_into(doc: str | Path, table: str) -> None:
    """Put ``table`` between the markers in ``doc`` (appended with them the first time)."""
    from adaptive_resnet.run_folder import write_atomic

    path = Path(doc)
    text = path.read_text() if path.is_file() else ""
    block = f"{START}\n{table}{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_atomic(path, text)
