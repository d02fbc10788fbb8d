"""The options of the commands that start the distributed runtime (`run` and `serve`), in one place."""

from __future__ import annotations

import typer

from adaptive_resnet.cli import checks

SCENARIO = typer.Argument(..., help="Scenario YAML whose model matches the checkpoint.")
CHECKPOINT = typer.Option(..., callback=checks.existing_file, help="Checkpoint written by `adaptive-resnet train`.")
SOLVER = typer.Option("fast")
DEADLINE = typer.Option(None, "--deadline", callback=checks.number(gt=0, le=86400),
                        help="Seconds one attempt of a request may take before the worker it waits on is suspected and the "
                             "request is recovered (default: 4x the plan's predicted latency x the step's requests + 10 s).")
EMULATE_LINKS = typer.Option(None, "--emulate-links/--no-emulate-links",
                             help="Wait size/rate on every hop and stretch compute to the devices' speeds (one machine standing "
                                  "for a network). Default: on when the Ray cluster is one node, off on several (a real network).")
ADDRESS = typer.Option(None, help="Ray address of an existing cluster (default: a local one).")
MEASURE_SPEEDS = typer.Option(None, "--measure-speeds/--configured-speeds",
                              help="Plan with the compute speeds workers show (default: on without link emulation).")
PROBE_RATES = typer.Option(None, "--probe-rates/--configured-rates",
                           help="Measure rates between workers on different nodes each step (default: on without link emulation).")

COMPILED_GRAPHS = typer.Option(False, "--compiled-graphs/--task-calls",
                               help="Run each request chain as a Ray Compiled Graph (lower latency; its actors busy-poll, "
                                    "so only with a core per worker). Falls back to task calls at the first failure.")
TIME_DILATION = typer.Option("1", help="Run emulated links and compute this many times slower and scale measured times "
                                        "back (a small host emulating many requests at once); 'auto': calibrate first, with a "
                                        "step of random images at dilation 1, 2, 4, ... until measured latency is within 10% "
                                        "of predicted (at most 32).")
RATE_TRACE = typer.Option(None, callback=checks.existing_file, help="CSV round,a,b,rate_mbps (as `simulate --rate-trace`): the emulated links' rates, "
                                      "time step by time step (rounds from 1).")
RUN_TIME_DILATION = typer.Option("auto", help="As --time-dilation; 'auto' (under link emulation): before the run, send the "
                                                "first step's images at dilation 1, 2, 4, ... until measured latency is within "
                                                "10% of predicted (at most 32), and run at that.")


def time_dilation_choice(text: str) -> tuple[float, bool]:
    """``--time-dilation`` of ``run``: (dilation to start at, whether to calibrate)."""
    from adaptive_resnet.errors import UserInputError

    if text.strip().lower() == "auto":
        return 1.0, True
    try:
        value = float(text)
    except ValueError:
        raise UserInputError(f"--time-dilation takes a number >= 1 or 'auto', not {text!r}") from None
    if not value >= 1.0:
        raise UserInputError(f"--time-dilation must be >= 1 (got {text})")
    return value, False


def calibrate_dilation(controller, images, doing: str) -> None:
    """``--time-dilation auto``: calibrate on ``images`` (:meth:`Controller.calibrate`) and say
    what was tried and what the command goes on at (``doing``: "running", "serving")."""
    trials = controller.calibrate(images)
    if trials:
        typer.echo("time dilation auto: " + ", ".join(f"x{k:g} measured/predicted {r:.2f}" for k, r in trials)
                   + f"; {doing} at x{controller.cluster.time_dilation:g}")


def class_names(text: str | None, num_classes: int) -> list[str] | None:
    """``--classes a,b,c``: one non-empty name per class of the model."""
    from adaptive_resnet.errors import UserInputError

    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if len(names) != num_classes or not all(names):
        raise UserInputError(f"--classes needs {num_classes} comma-separated non-empty names (the model's classes), got {len(names)}")
    return names
