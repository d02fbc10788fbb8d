"""``adaptive-resnet simulate``, ``experiment`` and ``demo``: the simulator from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli.app import command
from adaptive_resnet.errors import UserInputError

DEFAULT_SCENARIO = "scenarios/paper.yaml"
MAX_ROUNDS = 100_000  # SimConfig's bound, checked here before any work


def _load(scenario: Path):
    from adaptive_resnet.planning import load_problem

    return load_problem(scenario)


def _sim_config(**values):
    from pydantic import ValidationError

    from adaptive_resnet.config_errors import validation_message
    from adaptive_resnet.simulation.simulator import SimConfig

    try:
        return SimConfig(**values)
    except ValidationError as exc:
        raise UserInputError(validation_message(exc)) from None


def parse_failures(items: list[str], rounds: int) -> dict[int, list[str]]:
    """``--fail ROUND:DEVICE`` items as {round: [devices]}; rounds within 1..``rounds``."""

    failures: dict[int, list[str]] = {}
    for item in items:
        t, _, name = item.partition(":")
        if not t.strip().isdigit() or not name.strip():
            raise UserInputError(f"--fail expects ROUND:DEVICE (e.g. 3:low1), got {item!r}")
        if not 1 <= int(t) <= rounds:
            raise UserInputError(f"--fail {item!r}: round {int(t)} is outside 1..{rounds}")
        failures.setdefault(int(t), []).append(name.strip())
    return failures


@command("simulate")
def simulate_cli(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    out: Path = typer.Option(None, callback=checks.output_folder,
                             help="Folder for rounds.csv, summary.json, config.json (default runs/simulate/<scenario name>). "
                                  "Re-running the same command resumes; another configuration there is refused."),
    rounds: int = typer.Option(20, callback=checks.number(ge=1, le=MAX_ROUNDS), help="Time steps T."),
    request_rate: float = typer.Option(3.0, callback=checks.number(gt=0, le=1000), help="Poisson lambda: mean requests per round."),
    solver: str = typer.Option("fast"),
    battery: bool = typer.Option(False, help="Carry energy across rounds; empty devices leave."),
    rate_trace: Path = typer.Option(None, callback=checks.existing_file, help="CSV round,a,b,rate_mbps instead of the scenario's rates."),
    fail: list[str] = typer.Option([], help="ROUND:DEVICE, a device failing at a round (repeatable)."),
    time_limit: float = typer.Option(1.0, callback=checks.number(gt=0, le=3600), help="Seconds per round for the exact solver."),
    seed: int = typer.Option(0, callback=checks.number(ge=0)),
) -> None:
    """Simulate T rounds: Poisson requests, changing link rates, a plan per round."""
    from adaptive_resnet.planning import check_solver
    from adaptive_resnet.simulation.simulator import simulate

    check_solver(solver)
    config = _sim_config(rounds=rounds, request_rate=request_rate, solver=solver, battery=battery,
                         rate_trace=str(rate_trace) if rate_trace else None, failures=parse_failures(fail, rounds),
                         time_limit_s=time_limit, seed=seed)
    problem = _load(scenario)
    out = out or Path("runs") / "simulate" / scenario.stem
    result = simulate(problem, config, out)
    typer.echo(json.dumps(result["summary"], indent=2))
    typer.echo(f"rounds.csv and summary.json in {out}")


@command("experiment")
def experiment_cli(
    name: str = typer.Argument(..., help="fig6, fig7, fig8 or fig9."),
    scenario: Path = typer.Option(Path(DEFAULT_SCENARIO)),
    out: Path = typer.Option(None, callback=checks.output_folder, help="Folder (default runs/<name>); re-running resumes."),
    rounds: int = typer.Option(10, callback=checks.number(ge=1, le=MAX_ROUNDS)),
    solver: list[str] = typer.Option([], help="Solvers to compare (default: all, repeatable)."),
    seed: int = typer.Option(0, callback=checks.number(ge=0)),
    seeds: int = typer.Option(5, callback=checks.number(ge=1, le=1000), help="Independent seeds per point (seed, seed+1, ...): "
                              "each point is their mean with a 95% confidence interval."),
    jobs: int = typer.Option(None, callback=checks.number(ge=1, le=256), help="Processes running seeds side by side (default: one a core)."),
    on_ray: bool = typer.Option(False, "--ray", help="Run the seeds as Ray tasks (a local Ray of --jobs CPUs, or the cluster at --address)."),
    address: str = typer.Option(None, help="Ray address of an existing cluster to run the seeds on (implies --ray)."),
    reading: list[str] = typer.Option([], help="The paper's reading to run: fastest-device (ours), slowest-device or "
                                      "printed-eq5 (Eq. 5's normalisation), downsize (serve below the threshold before "
                                      "refusing) (default: the scenario's; docs/simulation.md). Repeatable: each reading "
                                      "runs into <out>-<reading>, then their trend table is printed side by side."),
) -> None:
    """One of the paper's experiments, every solver and baseline side by side, with plots."""
    from adaptive_resnet.errors import unknown_choice
    from adaptive_resnet.planning import check_solver
    from adaptive_resnet.simulation.experiments import ALL_SOLVERS, EXPERIMENTS, run_experiment
    from adaptive_resnet.system import READINGS

    if name not in EXPERIMENTS:
        raise unknown_choice("experiment", name, EXPERIMENTS)
    for s in solver:
        check_solver(s)
    for r in reading:
        if r not in READINGS:
            raise unknown_choice("reading", r, READINGS)
    if len(set(reading)) < len(reading):
        raise UserInputError(f"--reading {next(r for r in reading if reading.count(r) > 1)} is given twice")
    loaded = _load(scenario)
    runs = [(loaded, out or Path("runs") / name)] if not reading else \
        [(loaded.derive(loaded.scenario.model_copy(update=READINGS[r])),
          out if (out and len(reading) == 1) else Path(f"{out or Path('runs') / name}-{r}")) for r in reading]
    for problem, folder in runs:
        run_experiment(name, problem, folder, rounds, solver or ALL_SOLVERS, seed=seed, seeds=seeds, jobs=jobs, ray_address=address,
                       on_ray=on_ray)
        typer.echo(f"points.csv (per seed, mean, 95% CI) and {name}.png/.pdf written to {folder}")
    if len(runs) > 1:
        from adaptive_resnet.simulation.trends import trend_table

        typer.echo(trend_table(_trend_results([folder for _, folder in runs])))


def _trend_results(folders: list[Path]) -> dict[str, list[dict]]:
    """reading -> the measured trends of every finished experiment folder of that reading."""
    from adaptive_resnet.simulation.trends import measured_trends
    from adaptive_resnet.system import Scenario

    results: dict[str, list[dict]] = {}
    for folder in folders:
        config, points = folder / "config.json", folder / "points.csv"
        if not config.is_file() or not points.is_file():
            raise UserInputError(f"{folder} holds no finished experiment (config.json and points.csv)")
        reading = Scenario.model_validate(json.loads(config.read_text())["scenario"]).reading
        results.setdefault(reading, []).extend(measured_trends(points))
    return results


@command("trends")
def trends_cli(
    folders: list[Path] = typer.Argument(..., help="Experiment folders (as `experiment --out` writes them), any readings."),
    doc: Path = typer.Option(None, help="Also write the table into this Markdown file, between its trend-table markers."),
) -> None:
    """The paper's claimed trends of Figs. 6-9 against those measured, per reading and solver."""
    from adaptive_resnet.simulation.trends import trend_table, write_into

    table = trend_table(_trend_results(folders))
    typer.echo(table)
    if doc is not None:
        write_into(doc, table)
        typer.echo(f"written into {doc}")


@command("demo")
def demo_cli(
    scenario: Path = typer.Option(Path(DEFAULT_SCENARIO)),
    out: Path = typer.Option(Path("runs/demo"), callback=checks.output_folder, help="Folder for the results and plots."),
    rounds: int = typer.Option(8, callback=checks.number(ge=1, le=MAX_ROUNDS)),
) -> None:
    """The main job: a short simulation of the paper's cluster with every solver and baseline."""
    from rich.console import Console
    from rich.table import Table

    from adaptive_resnet.simulation.demo import run_demo

    rows = run_demo(_load(scenario), out, rounds, progress=True)
    table = Table(title=f"{rounds} rounds of the paper's 10-device cluster (ResNet-50, the paper's accuracy table)")
    for col in ("solver", "served", "accuracy (served)", "accuracy (all)", "latency s", "p95 s", "energy J", "shared MB", "GMAC", "solve s"):
        table.add_column(col, justify="left" if col == "solver" else "right")
    for r in rows:
        table.add_row(r["solver"], f"{r['served']}/{r['requests']}", f"{r['accuracy'] * 100:.2f}%", f"{r['accuracy_all'] * 100:.2f}%",
                      f"{r['latency_mean_s']:.3f}",
                      f"{r['latency_p95_s']:.3f}", f"{r['energy_j']:.0f}", f"{r['shared_mb']:.1f}", f"{r['gmacs']:.1f}",
                      f"{r['solve_time_s_mean']:.3f}")
    Console(width=max(Console().width, 110)).print(table)
    typer.echo(f"summary.csv, summary.png/.pdf and each solver's rounds.csv are in {out}/")
