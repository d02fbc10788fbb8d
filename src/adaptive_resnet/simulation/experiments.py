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

from adaptive_resnet.errors import UserInputError, unknown_choice
from adaptive_resnet.simulation.simulator import SimConfig, simulate

ALL_SOLVERS = ("exact", "fast", "paper", "no-drop", "neurosurgeon", "exo", "petals")
# The demo's panels (its bars compare solvers on one run).
METRICS = (("accuracy", "accuracy (%)", 100.0), ("latency_mean_s", "latency per request (s)", 1.0),
           ("shared_mb", "shared data (MB)", 1.0), ("gmacs", "computational load (GMAC)", 1.0),
           ("energy_j", "energy (J)", 1.0))
# What an experiment records per seed (the simulator's summary), and what its figure plots: the
# paper's panels (a)-(e) and the requests served. Accuracy is over every request (one left
# unserved counts as no answer), so that a system serving few requests cannot look best.
RECORDED = ("requests", "served", "unserved", "served_fraction", "accuracy", "accuracy_all", "latency_mean_s", "latency_p95_s",
            "shared_mb", "skip_mb", "gmacs", "energy_j", "blocks_dropped", "solve_time_s_mean")
PANELS = (("accuracy_all", "(a) accuracy over all requests (%)", 100.0), ("latency_mean_s", "(b) latency per served request (s)", 1.0),
          ("shared_mb", "(c) shared data, total over the run (MB)", 1.0), ("energy_j", "(d) energy, total over the run (J)", 1.0),
          ("gmacs", "(e) computational load, total over the run (GMAC)", 1.0), ("served_fraction", "requests served (%)", 100.0))
DEFAULT_SEEDS = 5


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


def _run_one(job: tuple) -> tuple:
    """One (point, solver, seed) simulation, in a worker process: (key, summary)."""
    key, point_problem, config, folder = job
    return key, simulate(point_problem, config, folder, progress=False)["summary"]


def _simulate_elsewhere(problem, config: SimConfig) -> dict:
    """One run as a Ray task: computed where Ray puts it, written by the driver (save_run),
    so no node needs the driver's disk."""
    return simulate(problem, config, None, progress=False)


def _run_on_ray(work: list, advance) -> dict:
    """Every job of ``work`` as a Ray task (one CPU each) on the cluster ``run_experiment``
    joined. Runs already finished in their folder are read back here; each one that finishes
    is written to its folder at once, so an interrupted experiment resumes per (point, solver,
    seed) as with processes. A task lost with its node is retried by Ray."""
    import ray

    from adaptive_resnet.simulation.simulator import save_run

    task = ray.remote(num_cpus=1, max_retries=3)(_simulate_elsewhere)
    shipped: dict[int, object] = {}  # each point's problem sent once, not once per seed
    results, pending = {}, {}
    for job in work:
        key, point_problem, config, folder = job
        if (folder / "summary.json").is_file():
            results[key] = _run_one(job)[1]  # done before: simulate resumes it with nothing left to run
            advance()
            continue
        ref = shipped.setdefault(id(point_problem), ray.put(point_problem))
        pending[task.remote(ref, config)] = job
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        key, point_problem, config, folder = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayError as exc:
            raise UserInputError(f"run {folder.name} failed on Ray: {str(exc).strip().splitlines()[-1]}") from None
        save_run(point_problem, config, folder, result)
        results[key] = result["summary"]
        advance()
    return results


def run_experiment(name: str, problem, out_dir: str | Path, rounds: int = 10, solvers: Sequence[str] = ALL_SOLVERS,
                   values: Sequence | None = None, seed: int = 0, progress: bool = True, seeds: int = DEFAULT_SEEDS,
                   jobs: int | None = None, ray_address: str | None = None, on_ray: bool = False) -> list[dict]:
    """Run one experiment on ``problem``'s scenario, every point with ``seeds`` independent
    seeds (``seed``, ``seed + 1``, ...); writes ``points.csv`` (a row per point, solver and seed,
    then its mean and 95% confidence interval), ``<name>.png`` and ``.pdf``, and each run under
    ``out_dir/runs`` (a re-run resumes each (point, solver, seed) where it stopped). Seeds run
    in ``jobs`` processes (default: one per core), or, with ``on_ray`` (or a ``ray_address``),
    as Ray tasks on that cluster (default: a local one of ``jobs`` CPUs). Returns a row per
    point and solver: each recorded metric's mean, with ``<metric>_ci95_low`` / ``_high``."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from adaptive_resnet.planning import SOLVER_NAMES
    from adaptive_resnet.run_folder import check_writable_target, claim, write_atomic
    from adaptive_resnet.simulation.stats import mean_ci

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
    if on_ray or ray_address:  # an unreachable cluster is refused before the folder is claimed
        from adaptive_resnet.ray_connect import connect

        connect(ray_address, num_cpus=max(1, min(jobs or os.cpu_count() or 1, 256)))
    # Each (point, solver, seed) is a run folder of its own, so solvers or seeds added to an
    # experiment run alone, beside the runs already there (the config then names them all).
    claim(out, {"experiment": name, "scenario": scenario.model_dump(), "rounds": rounds, "solvers": list(solvers),
                "values": [str(v) for v in values], "seed": seed, "seeds": seeds}, "experiment", ignore=("solvers", "seeds"))
    work = []
    for value, point_problem, updates in points_in:
        for solver in solvers:
            tag = f"{solver}-{str(value).replace(' ', '').replace(',', '_').strip('()')}"
            for k in range(seeds):
                config = SimConfig(rounds=rounds, solver=solver, seed=seed + k, **updates)
                work.append(((str(value), solver, seed + k), point_problem, config, out / "runs" / f"{tag}-s{seed + k}"))
    results: dict[tuple, dict] = {}
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    with _progress(progress, f"{name}: {len(values)} points x {len(solvers)} solvers x {seeds} seeds", len(work)) as advance:
        if on_ray or ray_address:
            results = _run_on_ray(work, advance)
        elif jobs == 1:
            for job in work:
                key, summary = _run_one(job)
                results[key] = summary
                advance()
        else:
            with ProcessPoolExecutor(jobs) as pool:
                for key, summary in pool.map(_run_one, work):
                    results[key] = summary
                    advance()
    rows, points = [], []
    for value, _, _ in points_in:
        for solver in solvers:
            per_seed = [results[(str(value), solver, seed + k)] for k in range(seeds)]
            base = {"experiment": name, "value": str(value), "solver": solver}
            rows += [{**base, "seed": seed + k, **{m: s[m] for m in RECORDED}} for k, s in enumerate(per_seed)]
            stats = {m: mean_ci([float(s[m]) for s in per_seed]) for m in RECORDED}
            rows += [{**base, "seed": label, **{m: stats[m][i] for m in RECORDED}} for i, label in enumerate(("mean", "ci95_low", "ci95_high"))]
            points.append({**base, "seeds": seeds, **{m: stats[m][0] for m in RECORDED},
                           **{f"{m}_ci95_low": stats[m][1] for m in RECORDED}, **{f"{m}_ci95_high": stats[m][2] for m in RECORDED}})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "points.csv", buf.getvalue())
    title = f"{exp.title}\nscenario {scenario.name}, {rounds} rounds, {seeds} seeds: mean and 95% confidence interval"
    plot_points(points, exp, out / f"{name}.png", title)
    return points


class _progress:
    """A bar over the experiment's runs (``enabled``), as a context giving ``advance()``."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def x_of(value) -> float:
    """A point's position on the x axis: the swept number (fig6's first element: alpha)."""
    return float(value[0] if isinstance(value, tuple) else value)


def plot_points(points: list[dict], exp: Experiment, path: Path, title: str | None = None) -> list[Path]:
    """The experiment's figure(s) (:func:`figure`), PNG and PDF. A sweep over pairs (fig6:
    alpha and threshold) gives one figure per second element. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(val[1] if isinstance(val, tuple) else None for val in map(_parse_value, (p["value"] for p in points))))
    written = []
    for group in groups:
        fig = figure(points, exp, title, group)
        name = path.stem if group is None else f"{path.stem}-{group:g}"  # fig6-0.85 (with_suffix would cut at its dot)
        for ext in (".png", ".pdf"):
            target = path.with_name(name + ext)
            fig.savefig(target, dpi=110)
            written.append(target)
        plt.close(fig)
    return written


def figure(points: list[dict], exp: Experiment, title: str | None = None, group=None):
    """A 2x3 grid of the paper's panels (a)-(e) plus requests served, against a numeric x axis:
    a line per solver with a distinct marker and style and a band for its 95% confidence
    interval, one legend for all panels, a title naming scenario, rounds and seeds."""
    import matplotlib.pyplot as plt

    parsed = {v: _parse_value(v) for v in dict.fromkeys(p["value"] for p in points)}
    solvers = list(dict.fromkeys(p["solver"] for p in points))
    markers, styles = "osD^vPX*", ("-", "--", "-.", ":")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (key, label, scale) in zip(axes.ravel(), PANELS, strict=True):
        for k, solver in enumerate(solvers):
            mine = sorted((p for p in points if p["solver"] == solver and (group is None or parsed[p["value"]][1] == group)),
                          key=lambda p: x_of(parsed[p["value"]]))
            xs = [x_of(parsed[p["value"]]) for p in mine]
            line, = ax.plot(xs, [p[key] * scale for p in mine], marker=markers[k % len(markers)], linestyle=styles[k % len(styles)],
                            label=solver, markersize=5, markerfacecolor="none" if k % 2 else None)
            ax.fill_between(xs, [p[f"{key}_ci95_low"] * scale for p in mine], [p[f"{key}_ci95_high"] * scale for p in mine],
                            color=line.get_color(), alpha=0.12, linewidth=0)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(exp.parameter, fontsize=8)
        ax.set_ylabel(label.split(") ", 1)[-1], fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(solvers), fontsize=9, frameon=False)
    suffix = "" if group is None else f" (accuracy threshold {group})"
    fig.suptitle((title or exp.title) + suffix, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _parse_value(text: str):
    """A point's value back from its text: a number, or a pair "(a, b)"."""
    text = text.strip()
    if text.startswith("("):
        return tuple(float(part) for part in text.strip("()").split(","))
    return float(text)
