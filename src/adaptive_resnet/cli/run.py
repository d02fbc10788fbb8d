"""``adaptive-resnet run``: classify images through the distributed cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli import runtime_options as opts
from adaptive_resnet.cli.app import command


@command("run")
def run_cli(
    scenario: Path = opts.SCENARIO,
    checkpoint: Path = opts.CHECKPOINT,
    images: Path = typer.Option(Path("../shared/data/cifar10"), help="ImageFolder root (its test/ split) or CIFAR-10 batches."),
    limit: int = typer.Option(64, callback=checks.number(ge=1), help="How many test images to send."),
    per_step: int = typer.Option(8, callback=checks.number(ge=1, le=10_000), help="Requests per time step (the controller re-plans each step)."),
    solver: str = opts.SOLVER,
    emulate_links: bool | None = opts.EMULATE_LINKS,
    address: str = opts.ADDRESS,
    measure_speeds: bool = opts.MEASURE_SPEEDS,
    probe_rates: bool = opts.PROBE_RATES,
    compiled_graphs: bool = opts.COMPILED_GRAPHS,
    time_dilation: str = opts.RUN_TIME_DILATION,
    rate_trace: Path = opts.RATE_TRACE,
    deadline: float = opts.DEADLINE,
) -> None:
    """Send test images through Ray workers; print accuracy, latency measured vs predicted, energy."""
    import numpy as np

    from adaptive_resnet.data import batches, load_images
    from adaptive_resnet.errors import UserInputError
    from adaptive_resnet.planning import check_solver, load_problem
    from adaptive_resnet.runtime.controller import Controller, RunReport
    from adaptive_resnet.simulation.simulator import read_trace

    dilation, calibrate = opts.time_dilation_choice(time_dilation)
    check_solver(solver)
    problem = load_problem(scenario)
    sc = problem.scenario
    data = load_images(images, "test", cache_dir="runs/cache").subset(limit)
    if data.images.shape[1:] != (sc.model.input_size, sc.model.input_size, 3):
        raise UserInputError(f"images are {data.images.shape[1:]} but the scenario's model takes "
                             f"{sc.model.input_size}x{sc.model.input_size}x3")
    steps = -(-len(data) // per_step)
    trace = read_trace(rate_trace, sc.device_names, steps) if rate_trace else None
    controller = Controller(problem, str(checkpoint), solver, emulate_links, address, measure_speeds=measure_speeds, probe_rates=probe_rates,
                            compiled_graphs=compiled_graphs, time_dilation=dilation, rate_trace=trace,
                            deadline_s=deadline)
    report = RunReport()
    try:
        if calibrate and controller.cluster.emulate_links and len(data):
            opts.calibrate_dilation(controller, next(iter(batches(data, per_step)))[0], "running")
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("requests", total=len(data))
            for x, y in batches(data, per_step):
                controller.step(x, y, report)
                bar.update(task, advance=len(y))
    finally:
        controller.shutdown()
    measured, predicted = np.array(report.latencies_s), np.array(report.predicted_s)
    dilation = controller.cluster.time_dilation
    typer.echo(f"sent {report.sent}, answered {report.answered}, failed {report.failed}, retried {report.retried}, "
               f"completed through a shortcut {report.shortcut}, plans {report.replans}")
    if report.answered:
        typer.echo(f"accuracy {report.correct / report.answered:.4f}; latency per request measured {measured.mean():.3f} s, "
                   f"predicted {predicted.mean():.3f} s (ratio {measured.mean() / max(predicted.mean(), 1e-9):.2f})"
                   + (f"; time dilation {dilation:g}: the host ran {dilation:g}x slower, times scaled back" if dilation != 1 else ""))
        p50, p95 = np.percentile(measured, [50, 95])
        typer.echo(f"measured latency per request: median {p50:.3f} s, 95th percentile {p95:.3f} s, max {measured.max():.3f} s")
    typer.echo("energy spent (J): " + ", ".join(f"{k} {v:.2f}" for k, v in report.energy_j.items()))
    if controller.measure_speeds:
        typer.echo("measured speeds (GMAC/s): " + ", ".join(f"{k} {v:.2f}" for k, v in report.speeds_gmacs.items()))

