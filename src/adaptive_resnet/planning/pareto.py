"""``pareto``: the latency-accuracy front of a scenario, by the epsilon-constraint method.

For each accuracy level a drop set reaches (at or above the scenario's threshold), minimise
latency alone (alpha = 1, beta = 0) subject to every request reaching that level; the
non-dominated (accuracy, latency) pairs form the front.
"""

from __future__ import annotations

from pathlib import Path

from adaptive_resnet.planning.problem import Problem  # noqa: TC001


def pareto_front(problem: Problem, solver: str = "exact", time_limit_s: float = 1.0) -> list[dict]:
    from adaptive_resnet.planning import solve, solver_options

    levels = sorted({c.accuracy for c in problem.candidates}, reverse=True)
    points = []
    for level in levels:
        scenario = problem.scenario.model_copy(update={"alpha": 1.0, "beta": 0.0, "accuracy_threshold": level})
        sub = problem.derive(scenario, rates_mbps=problem.rate_bps / 1e6, requests=problem.requests,
                             energy_j=problem.energy_limit_j, available=problem.available)
        options = {"time_limit_s": time_limit_s} if "time_limit_s" in solver_options(solver) else {}
        sol = solve(sub, solver, **options)
        points.append({"accuracy_threshold": level, "accuracy": sol.evaluation.accuracy, "latency_s": sol.evaluation.latency_s,
                       "feasible": sol.feasible, "lower_bound_latency_s": None if sol.lower_bound is None else sol.lower_bound * sub.reference_latency_s})
    front, best_latency = [], float("inf")
    for p in sorted((p for p in points if p["feasible"]), key=lambda p: (-p["accuracy"], p["latency_s"])):
        if p["latency_s"] < best_latency - 1e-12:
            front.append(p)
            best_latency = p["latency_s"]
    return front


def plot_front(front: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step([p["latency_s"] for p in front], [p["accuracy"] * 100 for p in front], where="post", marker="o")
    ax.set_xlabel("mean latency per request (s)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
