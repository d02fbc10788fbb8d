"""The paper's experiments (Figs. 6-9), every solver and baseline side by side, and the demo.

Each experiment sweeps one parameter of the paper's Section V scenario, runs the simulator for
every solver at every point, and writes ``points.csv`` and a figure shaped like the paper's:
panels for accuracy, latency, shared data, computational load and energy against the swept
parameter, one line per solver.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adaptive_resnet.errors import unknown_choice
from adaptive_resnet.simulation.simulator import SimConfig, simulate

ALL_SOLVERS = ("exact", "fast", "paper", "no-drop", "neurosurgeon", "exo", "petals")
METRICS = (("accuracy", "accuracy (%)", 100.0), ("latency_mean_s", "latency per request (s)", 1.0),
           ("shared_mb", "shared data (MB)", 1.0), ("gmacs", "computational load (GMAC)", 1.0),
           ("energy_j", "energy (J)", 1.0))


@dataclass(frozen=True)
class Experiment:
    title: str
    parameter: str
    values: tuple
    apply: Callable  # (scenario, value) -> (scenario, SimConfig updates)


def _devices(scenario, **per_kind):
    """Set fields on the low (first half) and high (second half) devices: field=(low, high)."""
    half = len(scenario.devices) // 2
    devices = []
    for i, d in enumerate(scenario.devices):
        devices.append(d.model_copy(update={k: v[0 if i < half else 1] for k, v in per_kind.items()}))
    return scenario.model_copy(update={"devices": devices})


def _fig6(scenario, value):
    alpha, threshold = value
    return scenario.model_copy(update={"alpha": alpha, "beta": round(1 - alpha, 10), "accuracy_threshold": threshold}), {}


def _fig7(scenario, battery_j):
    s = _devices(scenario, energy_j=(battery_j, battery_j))
    return s.model_copy(update={"alpha": 0.0, "beta": 1.0, "accuracy_threshold": 0.8}), {"battery": True}


def _fig8(scenario, lam):
    s = _devices(scenario, energy_j=(500.0, 800.0))
    return s.model_copy(update={"alpha": 0.7, "beta": 0.3, "accuracy_threshold": 0.8}), {"request_rate": lam, "battery": True}


def _fig9(scenario, scale):
    s = _devices(scenario, energy_j=(800.0, 1000.0), compute_limit_gmac=(1.4 * scale, 2.8 * scale))
    return s.model_copy(update={"alpha": 0.0, "beta": 1.0, "accuracy_threshold": 0.8}), {"battery": True}


EXPERIMENTS = {
    "fig6": Experiment("Fig. 6: weights alpha/beta and accuracy threshold", "alpha (threshold)",
                       tuple((a, th) for th in (0.8, 0.85, 0.9) for a in (0.0, 0.3, 0.5, 0.7, 1.0)), _fig6),
    "fig7": Experiment("Fig. 7: battery capacity (threshold 80%, alpha 0, beta 1)", "battery per device (J)",
                       (25.0, 50.0, 100.0, 200.0, 400.0), _fig7),
    "fig8": Experiment("Fig. 8: request rate (alpha 0.7, beta 0.3, batteries 500/800 J)", "lambda (requests per round)",
                       (1.0, 2.0, 3.0, 4.0, 5.0, 6.0), _fig8),
    "fig9": Experiment("Fig. 9: computational capacity (alpha 0, beta 1, batteries 800/1000 J)", "compute limit (x paper's 1.4/2.8 GMAC)",
                       (0.5, 0.75, 1.0, 1.5, 2.0), _fig9),
}


def run_experiment(name: str, problem, out_dir: str | Path, rounds: int = 10, solvers: Sequence[str] = ALL_SOLVERS,
                   values: Sequence | None = None, seed: int = 0, progress: bool = True) -> list[dict]:
    """Run one experiment on ``problem``'s scenario; writes ``points.csv`` and ``<name>.png`` to
    ``out_dir``, and each point's simulation under ``out_dir/runs`` (resumed when re-run)."""
    from adaptive_resnet.planning import SOLVER_NAMES
    from adaptive_resnet.run_folder import check_writable_target, claim, write_atomic

    if name not in EXPERIMENTS:
        raise unknown_choice("experiment", name, EXPERIMENTS)
    for solver in solvers:
        if solver not in SOLVER_NAMES:
            raise unknown_choice("solver", solver, SOLVER_NAMES)
    exp = EXPERIMENTS[name]
    scenario = problem.scenario
    values = list(values or exp.values)
    out = check_writable_target(out_dir)
    # Every point's scenario is built (and so checked) before the folder is claimed.
    points_in = [(value, problem.derive(exp.apply(scenario, value)[0]), exp.apply(scenario, value)[1]) for value in values]
    claim(out, {"experiment": name, "scenario": scenario.model_dump(), "rounds": rounds, "solvers": list(solvers),
                "values": [str(v) for v in values], "seed": seed}, "experiment")
    points = []
    for value, point_problem, updates in points_in:
        for solver in solvers:
            config = SimConfig(rounds=rounds, solver=solver, seed=seed, **updates)
            tag = f"{solver}-{str(value).replace(' ', '').replace(',', '_').strip('()')}"
            result = simulate(point_problem, config, out / "runs" / tag, progress=False)
            s = result["summary"]
            points.append({"experiment": name, "value": str(value), "solver": solver, **{k: s[k] for k in
                           ("requests", "served", "unserved", "accuracy", "latency_mean_s", "latency_p95_s", "shared_mb",
                            "skip_mb", "gmacs", "energy_j", "blocks_dropped", "solve_time_s_mean")}})
            if progress:
                print(f"{name} {exp.parameter}={value} {solver:<12} served {s['served']}/{s['requests']} "
                      f"acc {s['accuracy'] * 100:5.2f}% lat {s['latency_mean_s']:.3f}s energy {s['energy_j']:.0f}J", flush=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(points[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    write_atomic(out / "points.csv", buf.getvalue())
    plot_points(points, exp, out / f"{name}.png")
    return points


def plot_points(points: list[dict], exp: Experiment, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = list(dict.fromkeys(p["value"] for p in points))
    solvers = list(dict.fromkeys(p["solver"] for p in points))
    fig, axes = plt.subplots(1, len(METRICS) + 1, figsize=(4 * (len(METRICS) + 1), 3.6))
    for ax, (key, label, scale) in zip(axes, (*METRICS, ("unserved", "requests not served", 1.0)), strict=True):
        for solver in solvers:
            ys = [next(p[key] for p in points if p["value"] == v and p["solver"] == solver) * scale for v in values]
            ax.plot(range(len(values)), ys, marker="o", label=solver)
        ax.set_xticks(range(len(values)), values, rotation=45, fontsize=7)
        ax.set_xlabel(exp.parameter, fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(exp.title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
