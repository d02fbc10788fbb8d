"""``adaptive-resnet serve``: start the workers and the controller behind an HTTP endpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_resnet.cli import checks
from adaptive_resnet.cli import runtime_options as opts
from adaptive_resnet.cli.app import command


@command("serve")
def serve_cli(
    scenario: Path = opts.SCENARIO,
    checkpoint: Path = opts.CHECKPOINT,
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8080, callback=checks.port, help="0 picks a free port."),
    step_s: float = typer.Option(0.2, callback=checks.number(gt=0, le=3600), help="Requests arriving within this window form one time step."),
    solver: str = opts.SOLVER,
    emulate_links: bool | None = opts.EMULATE_LINKS,
    address: str = opts.ADDRESS,
    measure_speeds: bool = opts.MEASURE_SPEEDS,
    probe_rates: bool = opts.PROBE_RATES,
    compiled_graphs: bool = opts.COMPILED_GRAPHS,
    time_dilation: str = opts.TIME_DILATION,
    rate_trace: Path = opts.RATE_TRACE,
    deadline: float = opts.DEADLINE,
    classes: str = typer.Option(None, help="Comma-separated class names, to answer names as well as indices."),
    max_queue: int = typer.Option(256, callback=checks.number(ge=1, le=100_000),
                                  help="Requests that may wait for a step; beyond, 503 with Retry-After."),
    request_timeout: float = typer.Option(300.0, callback=checks.number(gt=0, le=86400),
                                          help="Seconds a request may wait for its answer (504 after; it is then not run)."),
    grace: float = typer.Option(10.0, callback=checks.number(ge=0, le=3600),
                                help="Seconds Ctrl-C lets in-flight requests finish before the rest fail."),
) -> None:
    """Serve POST /classify (image bytes -> class) and GET /status until interrupted."""
    from adaptive_resnet.planning import check_solver, load_problem
    from adaptive_resnet.runtime.controller import Controller
    from adaptive_resnet.runtime.server import Server, bind, http_server
    from adaptive_resnet.simulation.simulator import read_trace

    dilation, calibrate = opts.time_dilation_choice(time_dilation)
    check_solver(solver)
    problem = load_problem(scenario)
    sc = problem.scenario
    class_names = opts.class_names(classes, sc.model.num_classes)
    sock = bind(host, port)  # before any worker starts: a port in use is refused at once
    trace = read_trace(rate_trace, sc.device_names) if rate_trace else None  # repeats after its last round
    controller = Controller(problem, str(checkpoint), solver, emulate_links, address, measure_speeds=measure_speeds, probe_rates=probe_rates,
                            compiled_graphs=compiled_graphs, time_dilation=dilation, rate_trace=trace,
                            deadline_s=deadline)
    if calibrate and controller.cluster.emulate_links:
        import torch

        size = sc.model.input_size
        opts.calibrate_dilation(controller, torch.randn(sc.requests, 3, size, size), "serving")  # latency does not depend on the pixels
    server = Server(controller, step_s=step_s, classes=class_names, max_queue=max_queue, request_timeout_s=request_timeout)
    web = http_server(server, sock, grace_s=grace)
    typer.echo(f"serving {sc.model.arch} on {len(sc.devices)} workers at http://{host}:{sock.getsockname()[1]} "
               f"(POST /classify, GET /status); Ctrl-C stops", err=False)
    try:
        web.run(sockets=[sock])  # until Ctrl-C: stops accepting, lets in-flight requests finish for --grace seconds
    except KeyboardInterrupt:
        pass  # uvicorn raises the Ctrl-C it handled again once its graceful shutdown is done: a normal stop
    finally:
        server.close(grace_s=grace)  # what is still queued fails with "shutting down"; every outcome counted
        controller.shutdown()
        sock.close()
        status = server.status()
        failed = ", ".join(f"{k} {v}" for k, v in sorted(status["failed_by_reason"].items()))
        typer.echo(f"answered {status['answered']}, failed {status['failed']}" + (f" ({failed})" if failed else "")
                   + f", through a shortcut {status['shortcut']}, steps {status['steps']}")
