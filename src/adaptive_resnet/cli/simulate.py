"""``adaptive-resnet simulate``, ``experiment`` and ``demo``: the simulator from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from adaptive_resnet.cli.app import command

DEFAULT_SCENARIO = "scenarios/paper.yaml"


def _load(scenario: Path):
    from adaptive_resnet.system import load_scenario

    return load_scenario(scenario)


@command("simulate")
def simulate_cli(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    out: Path = typer.Option(Path("runs/simulate"), help="Folder for rounds.csv, summary.json, config.json."),
    rounds: int = typer.Option(20, help="Time steps T."),
    request_rate: float = typer.Option(3.0, help="Poisson lambda: mean requests per round."),
    solver: str = typer.Option("fast"),
    battery: bool = typer.Option(False, help="Carry energy across rounds; empty devices leave."),
    rate_trace: Path = typer.Option(None, help="CSV round,a,b,rate_mbps instead of random rates."),
    fail: list[str] = typer.Option([], help="ROUND:DEVICE, a device failing at a round (repeatable)."),
    seed: int = typer.Option(0),
) -> None:
    """Simulate T rounds: Poisson requests, changing link rates, a plan per round."""
    from pydantic import ValidationError

    from adaptive_resnet.config_errors import validation_message
    from adaptive_resnet.errors import UserInputError
    from adaptive_resnet.simulation.simulator import SimConfig, simulate

    failures: dict[int, list[str]] = {}
    for item in fail:
        t, _, name = item.partition(":")
        if not t.isdigit() or not name:
            raise UserInputError(f"--fail expects ROUND:DEVICE, got {item!r}")
        failures.setdefault(int(t), []).append(name)
    try:
        config = SimConfig(rounds=rounds, request_rate=request_rate, solver=solver, battery=battery,
                           rate_trace=str(rate_trace) if rate_trace else None, failures=failures, seed=seed)
    except ValidationError as exc:
        raise UserInputError(validation_message(exc)) from None
    result = simulate(_load(scenario), config, out)
    typer.echo(json.dumps(result["summary"], indent=2))


@command("experiment")
def experiment_cli(
    name: str = typer.Argument(..., help="fig6, fig7, fig8 or fig9."),
    scenario: Path = typer.Option(Path(DEFAULT_SCENARIO)),
    out: Path = typer.Option(None, help="Folder (default runs/<name>)."),
    rounds: int = typer.Option(10),
    solver: list[str] = typer.Option([], help="Solvers to compare (default: all, repeatable)."),
    seed: int = typer.Option(0),
) -> None:
    """One of the paper's experiments, every solver and baseline side by side, with plots."""
    from adaptive_resnet.errors import UserInputError
    from adaptive_resnet.simulation.experiments import ALL_SOLVERS, EXPERIMENTS, run_experiment

    if name not in EXPERIMENTS:
        from adaptive_resnet.errors import unknown_choice

        raise unknown_choice("experiment", name, EXPERIMENTS)
    if rounds < 1:
        raise UserInputError(f"rounds must be at least 1, got {rounds}")
    run_experiment(name, _load(scenario), out or Path("runs") / name, rounds, solver or ALL_SOLVERS, seed=seed)
    typer.echo(f"points.csv and {name}.png written to {out or Path('runs') / name}")


@command("demo")
def demo_cli(
    scenario: Path = typer.Option(Path(DEFAULT_SCENARIO)),
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the results and plots."),
    rounds: int = typer.Option(8),
) -> None:
    """The main job: a short simulation of the paper's cluster with every solver and baseline."""
    from rich.console import Console
    from rich.table import Table

    from adaptive_resnet.simulation.demo import run_demo

    rows = run_demo(_load(scenario), out, rounds)
    table = Table(title=f"{rounds} rounds of the paper's 10-device cluster (ResNet-50, the paper's accuracy table)")
    for col in ("solver", "served", "accuracy", "latency s", "p95 s", "energy J", "shared MB", "GMAC", "solve s"):
        table.add_column(col, justify="left" if col == "solver" else "right")
    for r in rows:
        table.add_row(r["solver"], f"{r['served']}/{r['requests']}", f"{r['accuracy'] * 100:.2f}%", f"{r['latency_mean_s']:.3f}",
                      f"{r['latency_p95_s']:.3f}", f"{r['energy_j']:.0f}", f"{r['shared_mb']:.1f}", f"{r['gmacs']:.1f}",
                      f"{r['solve_time_s_mean']:.3f}")
    Console(width=max(Console().width, 110)).print(table)
    typer.echo(f"plots and per-round results in {out}/")
