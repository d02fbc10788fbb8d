"""The time-stepped simulator (paper, Sec. V): Poisson requests, changing links, batteries.

Each round t = 1..T draws its number of requests from Poisson(lambda) and the links' rates as
the scenario gives them (a fresh draw from its ``range`` every round, else its fixed rates; or a
trace), plans the round with a solver, and accounts
for what the plan costs through the one cost model (:meth:`Problem.evaluate`). Options beyond
the paper: batteries carried across rounds (a device whose battery is empty leaves the
cluster), device failures at given rounds, a rate trace instead of independent draws.

A round whose requests do not all fit serves as many as the planner admits (``fast`` and
``exact`` decide it in one solve, :func:`~adaptive_resnet.planning.admit`); the requests left
out are counted as not served, with the binding resource as the reason. Finished rounds are appended to ``rounds.csv`` as they complete, so an interrupted
run keeps them, and a re-run with the same configuration resumes after the last finished round
(:mod:`adaptive_resnet.run_folder`: a round cut short by a kill is run again).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from adaptive_resnet.errors import UserInputError

# A device whose battery falls below this share of its capacity leaves the cluster: the planner
# never overdraws a battery, so "empty" has to mean "too low to be worth keeping".
EMPTY_FRACTION = 0.05

ROUND_FIELDS = [
    "round", "solver", "requests", "served", "unserved", "unserved_reason", "accuracy", "latency_mean_s", "latency_p95_s",
    "direct_mb", "skip_mb", "gmacs", "energy_j", "blocks_dropped", "devices_alive", "solve_time_s", "objective",
]


class SimConfig(BaseModel):
    """A simulation run; saved as ``config.json`` beside its results."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rounds: int = Field(20, ge=1, le=100_000)
    request_rate: float = Field(3.0, gt=0, le=1000)  # lambda, requests per round
    rate_trace: str | None = None  # CSV: round,a,b,rate_mbps
    battery: bool = False  # carry energy across rounds (energy_j is then the battery capacity)
    failures: dict[int, list[str]] = {}  # round -> devices that fail at its start
    solver: str = "fast"
    time_limit_s: float = Field(1.0, gt=0)
    seed: int = 0


def read_trace(path: str | Path, devices: list[str], rounds: int | None = None) -> dict[int, np.ndarray]:
    """Per-round rate matrices from ``round,a,b,rate_mbps`` rows, rounds from 1; every round
    needs every pair, for ``rounds`` rounds (None: up to the file's last)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"rate trace not found: {path}")
    n = len(devices)
    out: dict[int, np.ndarray] = {}
    with path.open() as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                t, a, b, rate = int(row["round"]), row["a"].strip(), row["b"].strip(), float(row["rate_mbps"])
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise UserInputError(f"{path}:{line}: expected columns round,a,b,rate_mbps ({exc})") from None
            if a not in devices or b not in devices:
                raise UserInputError(f"{path}:{line}: unknown device in pair {a},{b}; devices: {', '.join(devices)}")
            if not rate > 0:
                raise UserInputError(f"{path}:{line}: rate must be positive, got {rate}")
            m = out.setdefault(t, np.full((n, n), np.nan))
            i, k = devices.index(a), devices.index(b)
            m[i, k] = m[k, i] = rate
    if rounds is None:
        rounds = max(out, default=0)
        if rounds < 1:
            raise UserInputError(f"{path}: no rounds (expected rows round,a,b,rate_mbps with rounds from 1)")
    for t in range(1, rounds + 1):
        m = out.get(t)
        missing = None if m is None else [(devices[i], devices[k]) for i in range(n) for k in range(i + 1, n) if np.isnan(m[i, k])]
        if m is None or missing:
            what = "no rows" if m is None else f"no rate for {missing[0][0]},{missing[0][1]}"
            raise UserInputError(f"{path}: round {t} has {what} (the trace must cover every round and pair)")
    return out


def simulate(problem, config: SimConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Run the simulation of ``problem``'s scenario (a :class:`~adaptive_resnet.planning.Problem`,
    as :func:`~adaptive_resnet.planning.load_problem` reads it); returns the summary and writes
    rounds.csv, summary.json, config.json to ``out_dir`` (resuming the same run there)."""
    from adaptive_resnet.planning import SOLVER_NAMES
    from adaptive_resnet.run_folder import (
        append_record,
        check_writable_target,
        claim,
        read_records,
        start_records,
        write_atomic,
    )

    if config.solver not in SOLVER_NAMES:
        from adaptive_resnet.errors import unknown_choice

        raise unknown_choice("solver", config.solver, SOLVER_NAMES)
    scenario = problem.scenario
    names = scenario.device_names
    for t, failed in config.failures.items():
        for name in failed:
            if name not in names:
                raise UserInputError(f"failures: round {t} names unknown device {name!r}; devices: {', '.join(names)}")
        if not 1 <= t <= config.rounds:
            raise UserInputError(f"failures: round {t} is outside the run's rounds 1..{config.rounds}")
    trace = read_trace(config.rate_trace, names, config.rounds) if config.rate_trace else None
    rng = np.random.default_rng(config.seed)
    n = len(names)
    capacity = np.array([d.energy_j for d in scenario.devices], float)
    battery = capacity.copy()
    alive = np.ones(n, bool)
    fields = _fields(names)

    rows: list[dict] = []
    out = Path(out_dir) if out_dir else None
    if out:
        check_writable_target(out)
        rounds_path = out / "rounds.csv"
        if claim(out, _identity(problem, config), "simulation") and rounds_path.is_file():
            rows = read_records(rounds_path, fields, key="round")[: config.rounds]
        else:
            start_records(rounds_path, fields)
    done = len(rows)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    t_start = time.perf_counter()
    with Progress(TextColumn(f"simulate {config.solver}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("sim", total=config.rounds, completed=done)
        for t in range(1, config.rounds + 1):
            # Draw every round's randomness even when resuming, so results do not depend on it.
            requests = int(rng.poisson(config.request_rate))
            drawn = scenario.rate_matrix(rng)  # the scenario's rates: drawn each round from a range, else fixed
            rates = trace[t] if trace else drawn
            for name in config.failures.get(t, []):
                alive[names.index(name)] = False
            if t <= done:
                if config.battery:
                    battery -= np.array([float(rows[t - 1].get(f"energy_j:{d}", 0) or 0) for d in names])
                    alive &= battery > EMPTY_FRACTION * capacity
                continue
            row = _round(t, requests, rates, alive, battery if config.battery else None, problem, config)
            if config.battery:
                battery -= np.array([row[f"energy_j:{d}"] for d in names])
                alive &= battery > EMPTY_FRACTION * capacity
            rows.append(row)
            if out:
                append_record(rounds_path, fields, row)
            bar.update(task, completed=t)
    summary = summarise(rows, names)
    summary["wall_s"] = time.perf_counter() - t_start
    if out:
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return {"summary": summary, "rounds": rows}


def _fields(names: list[str]) -> list[str]:
    return ROUND_FIELDS + [f"energy_j:{d}" for d in names]


def _identity(problem, config: SimConfig) -> dict:
    """What determines a run's results: the folder's ``config.json``."""
    return {"scenario": problem.scenario.model_dump(), "config": config.model_dump()}


def save_run(problem, config: SimConfig, out_dir: str | Path, result: dict) -> None:
    """Write a finished run computed elsewhere (``simulate``'s result, from a Ray task on
    another node) to ``out_dir`` as ``simulate`` itself would have: running the same run there
    again then finds every round done."""
    from adaptive_resnet.run_folder import check_writable_target, claim, start_records, write_atomic

    out = check_writable_target(out_dir)
    fields = _fields(problem.scenario.device_names)
    claim(out, _identity(problem, config), "simulation")
    start_records(out / "rounds.csv", fields, result["rounds"])  # one write: the run is finished, not in progress
    write_atomic(out / "summary.json", json.dumps(result["summary"], indent=2) + "\n")


def _solve_round(problem, config: SimConfig, t: int, step: dict):
    """Plan round ``t`` (``step``: the :meth:`Problem.derive` arguments of the round), serving
    as many of its requests as fit (:func:`~adaptive_resnet.planning.admit`)."""
    from adaptive_resnet.planning import admit

    step = problem.derive(**step)
    options = {"time_limit_s": config.time_limit_s} if config.solver == "exact" else {}
    if config.solver == "paper":
        options = {"pop_size": 40, "generations": 40, "seed": config.seed + t}
    return admit(step, config.solver, **options)


def _round(t, requests, rates, alive, battery, problem, config) -> dict:
    """One round: plan as many of its requests as fit, and what that plan costs.

    How many are served is the planner's decision, in one solve for ``fast`` and ``exact``
    (:func:`~adaptive_resnet.planning.admit`); the requests left out are counted as not served,
    with the binding resource as the reason.
    """
    names = problem.devices
    row: dict = dict.fromkeys(ROUND_FIELDS, 0)
    row.update(round=t, solver=config.solver, requests=requests, unserved_reason="", devices_alive=int(alive.sum()))
    energy = np.zeros(len(names))
    step = {"rates_mbps": rates, "energy_j": battery if battery is not None else None, "available": alive}
    served, reason, sol = requests, "", None
    if requests and not alive.any():
        served, reason = 0, "no device left"
    elif requests:
        sol = _solve_round(problem, config, t, {**step, "requests": requests})
        served, reason = sol.served, sol.unserved_reason
    if sol is not None and served:
        ev = sol.evaluation
        lat = np.array(ev.latencies_s)
        energy = np.array([ev.energy_j[d] for d in names])
        row.update(accuracy=ev.accuracy, latency_mean_s=float(lat.mean()), latency_p95_s=float(np.percentile(lat, 95)),
                   direct_mb=ev.direct_bytes / 1e6, skip_mb=ev.skip_bytes / 1e6, gmacs=sum(ev.macs.values()) / 1e9,
                   energy_j=float(energy.sum()), blocks_dropped=ev.dropped_blocks, solve_time_s=sol.solve_time_s,
                   objective=ev.objective)
    row.update(served=served, unserved=requests - served, unserved_reason=reason if served < requests else "")
    for d, e in zip(names, energy, strict=True):
        row[f"energy_j:{d}"] = float(e)
    return row


def summarise(rows: list[dict], names: list[str]) -> dict:
    """Totals and request-weighted means over rounds."""
    def col(k):
        return np.array([float(r[k] or 0) for r in rows])

    served = col("served")
    weight = served / served.sum() if served.sum() else served
    return {
        "rounds": len(rows),
        "requests": int(col("requests").sum()),
        "served": int(served.sum()),
        "unserved": int(col("unserved").sum()),
        "accuracy": float((col("accuracy") * weight).sum()),  # over the requests served
        # Fair across systems: the share served, and accuracy over every request (one left
        # unserved is no answer, so it counts as wrong): a system that serves few cannot look best.
        "served_fraction": float(served.sum() / col("requests").sum()) if col("requests").sum() else 1.0,
        "accuracy_all": float((col("accuracy") * served).sum() / col("requests").sum()) if col("requests").sum() else 0.0,
        "latency_mean_s": float((col("latency_mean_s") * weight).sum()),
        "latency_p95_s": float(col("latency_p95_s")[served > 0].max()) if (served > 0).any() else 0.0,
        "shared_mb": float(col("direct_mb").sum() + col("skip_mb").sum()),
        "skip_mb": float(col("skip_mb").sum()),
        "gmacs": float(col("gmacs").sum()),
        "energy_j": float(col("energy_j").sum()),
        "energy_j_per_device": {d: float(col(f"energy_j:{d}").sum()) for d in names},
        "blocks_dropped": int(col("blocks_dropped").sum()),
        "solve_time_s_mean": float(col("solve_time_s").mean()) if rows else 0.0,
    }
