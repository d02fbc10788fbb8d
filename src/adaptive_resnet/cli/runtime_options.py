"""The options of the commands that start the distributed runtime (`run` and `serve`), in one place."""

from __future__ import annotations

import typer

SCENARIO = typer.Argument(..., help="Scenario YAML whose model matches the checkpoint.")
CHECKPOINT = typer.Option(..., help="Checkpoint written by `adaptive-resnet train`.")
SOLVER = typer.Option("fast")
EMULATE_LINKS = typer.Option(True, help="Wait size/rate on every hop (one machine standing for a network).")
ADDRESS = typer.Option(None, help="Ray address of an existing cluster (default: a local one).")
MEASURE_SPEEDS = typer.Option(None, "--measure-speeds/--configured-speeds",
                              help="Plan with the compute speeds workers show (default: on without link emulation).")
PROBE_RATES = typer.Option(None, "--probe-rates/--configured-rates",
                           help="Measure rates between workers on different nodes each step (default: on without link emulation).")

COMPILED_GRAPHS = typer.Option(False, "--compiled-graphs/--task-calls",
                               help="Run each request chain as a Ray Compiled Graph (lower latency; its actors busy-poll, "
                                    "so only with a core per worker). Falls back to task calls at the first failure.")
TIME_DILATION = typer.Option(1.0, min=1.0, help="Run emulated links and compute this many times slower and scale measured "
                                                   "times back (a small host emulating many requests at once).")
