"""``adaptive-resnet plan``, ``evaluate`` and ``pareto``: the planner from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli.app import command


def _problem(scenario: Path):
    from adaptive_resnet.planning import load_problem

    return load_problem(scenario)


def _summary(doc: dict) -> str:
    lines = [
        f"solver {doc['solver']}: {'feasible' if doc['feasible'] else 'INFEASIBLE'}, objective {doc['objective']:.4f}"
        + (f", lower bound {doc['lower_bound']:.4f}" if doc.get("lower_bound") is not None else ""),
        f"mean latency {doc['latency_s']:.3f} s, mean accuracy {doc['accuracy'] * 100:.2f}%, solved in {doc.get('solve_time_s', 0):.3f} s",
    ]
    lines += [f"violated: {v}" for v in doc["violations"]]
    if doc.get("admitted"):
        a = doc["admitted"]
        lines.append(f"served {a['served']} of {a['of']} requests; not more: {a['unserved_reason'] or 'see the note'}")
    if doc.get("note"):
        lines.append(doc["note"])
    return "\n".join(lines)


@command("plan")
def plan_cli(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    solver: str = typer.Option("exact", help="exact, fast, paper, or a baseline (no-drop, neurosurgeon, exo, petals)."),
    time_limit: float = typer.Option(1.0, callback=checks.number(gt=0, le=86400),
                                     help="Seconds the solver may take (exact and paper; fast is far quicker and ignores it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    out: Path = typer.Option(None, callback=checks.output_file, help="Also write the plan JSON here (what `evaluate` reads)."),
    admit_some: bool = typer.Option(False, "--admit", help="Serve as many of the step's requests as fit (the scenario's "
                                    "admission: refuse or downsize) and name the binding resource, instead of one plan "
                                    "for all of them that may violate it."),
) -> None:
    """Plan one time step: which device runs each block and which blocks are dropped."""
    from adaptive_resnet.planning import admit, check_solver, solve
    from adaptive_resnet.planning.plan_file import write_plan

    check_solver(solver)
    problem = _problem(scenario)
    options = {"time_limit_s": time_limit} if solver in ("exact", "paper") else {}
    solution = (admit if admit_some else solve)(problem, solver, **options)
    doc = solution.to_json(problem)
    if out:
        write_plan(out, doc)  # the document printed below, built once
    typer.echo(json.dumps(doc, indent=2) if as_json else _summary(doc))


@command("evaluate")
def evaluate_cli(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    plan: Path = typer.Argument(..., callback=checks.existing_file, help="Plan JSON (as `plan --out plan.json` writes it)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-evaluate a plan: objective, latency, accuracy, energy and memory, violated constraints."""
    from adaptive_resnet.planning.plan_file import read_plan
    from adaptive_resnet.planning.solution import Solution

    problem, parsed = read_plan(plan, _problem(scenario))
    out = Solution("evaluate", parsed, problem.evaluate(parsed), 0.0).to_json(problem)
    typer.echo(json.dumps(out, indent=2) if as_json else _summary(out))


@command("pareto")
def pareto_cli(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    out: Path = typer.Option(Path("runs/pareto"), callback=checks.output_folder, help="Folder for pareto.csv and pareto.png."),
    solver: str = typer.Option("exact", help="Solver for each point."),
    time_limit: float = typer.Option(2.0, callback=checks.number(gt=0, le=86400), help="Seconds per point for the exact solver."),
) -> None:
    """Latency-accuracy Pareto front (epsilon-constraint over accuracy)."""
    import csv

    from adaptive_resnet.planning import check_solver
    from adaptive_resnet.planning.pareto import pareto_front, plot_front

    check_solver(solver)
    problem = _problem(scenario)
    front = pareto_front(problem, solver, time_limit)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "pareto.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["accuracy_threshold", "accuracy", "latency_s", "feasible", "lower_bound_latency_s"])
        writer.writeheader()
        writer.writerows(front)
    plot_front(front, out / "pareto.png", f"{problem.scenario.name}: latency vs accuracy ({solver})")
    for p in front:
        typer.echo(f"accuracy {p['accuracy'] * 100:6.2f}%  latency {p['latency_s']:.3f} s")
    typer.echo(f"front of {len(front)} points written to {out}")
