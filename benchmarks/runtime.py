"""Monolithic vs distributed inference on one machine (no link emulation), side by side.

    .venv/bin/python benchmarks/runtime.py [--requests 16] [--cifar-checkpoint results/cifar-r50w16/model.pt] [--compiled]

For ResNet-50 at 224x224 (random weights: timing does not depend on them) and, when given, the
committed CIFAR checkpoint, with 2 and 4 workers each running a contiguous share of the units:
latency of one request alone (median of 15 after 3 warm-up calls), and throughput of a batch
of requests submitted together.
Target: distributed latency <= 1.2x monolithic for ResNet-50 at 224.

Beside each split, Ray's own share: the same chain through as many no-op actors ("relays"),
each returning an array of the size the real worker sends on, so the floor a split can reach
on this machine, (monolithic + relays) / monolithic, is measured in the same run as the split.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adaptive_resnet.planning.step_plan import PlannedRequest, StepPlan
from adaptive_resnet.train import TrainConfig, build_model, model_from_checkpoint

WARM_UP, TIMED = 3, 15  # calls before timing (steady state), and calls timed, per set-up


def split_plan(units: list[str], devices: list[str]) -> StepPlan:
    placement = {u: devices[min(len(devices) * i // len(units), len(devices) - 1)] for i, u in enumerate(units)}
    return StepPlan.of(PlannedRequest.of(placement))


def median_s(call) -> float:
    """Median wall time of ``TIMED`` calls: on a shared 2-core machine a mean is swayed by the
    odd call that another process interrupts."""
    times = []
    for _ in range(TIMED):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_medians_s(mono, distributed) -> tuple[float, float]:
    """Median wall times of ``TIMED`` calls of each, alternated: this machine's speed drifts by
    ~10% between minutes (the monolithic model measured 84.7 and 94.4 ms in two runs), so each
    set-up is compared with the monolithic model timed at the same moments."""
    pairs = []
    for _ in range(TIMED):
        t0 = time.perf_counter()
        mono()
        t1 = time.perf_counter()
        distributed()
        pairs.append((t1 - t0, time.perf_counter() - t1))
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


class Relay:
    """A hop with no compute: takes the previous activation, sends on one of ``nbytes``."""

    def __init__(self) -> None:
        self.out: dict[int, np.ndarray] = {}

    def run(self, x, nbytes: int) -> np.ndarray:
        if nbytes not in self.out:  # made once, as a worker's activation memory is reused
            self.out[nbytes] = np.ones(nbytes, np.uint8)
        return self.out[nbytes]


def relay_chain_s(cluster, plan: StepPlan, x: torch.Tensor, mono) -> tuple[float, float]:
    """Median seconds of the monolithic model and of one request through no-op actors, one per
    segment of ``plan``, passing activations of the sizes the workers pass (timed alternately)."""
    import ray

    from adaptive_resnet.runtime.chains import request_input

    chain = plan.requests[0].segments()
    sizes = [cluster.problem.profile[units[-1]].output_bytes for _, units in chain]
    relays = [ray.remote(num_cpus=0)(Relay).remote() for _ in chain]

    def request() -> None:
        ref = request_input(x, 0)
        for relay, nbytes in zip(relays, sizes, strict=True):
            ref = relay.run.remote(ref, nbytes)
        ray.get(ref)

    for _ in range(WARM_UP):
        request()
    try:
        return paired_medians_s(mono, request)
    finally:
        for relay in relays:
            ray.kill(relay)


def timed(cluster, x: torch.Tensor, plan: StepPlan, mono) -> tuple[float, float, float | None]:
    """Latency of one request alone (steady state), of the monolithic model timed alongside
    (``mono``; None: not timed), and throughput of ``x`` submitted together."""
    for _ in range(WARM_UP):  # the first loads the weights (and compiles); a few more fault in the memory
        cluster.infer(x[:1], plan)
    if mono is None:
        mono_latency, latency = None, median_s(lambda: cluster.infer(x[:1], plan))
    else:
        mono_latency, latency = paired_medians_s(mono, lambda: cluster.infer(x[:1], plan))
    t0 = time.perf_counter()
    outcomes = cluster.infer(x, plan)
    throughput = len(x) / (time.perf_counter() - t0)
    assert all(o.error is None for o in outcomes)
    return latency, throughput, mono_latency


def measure(name: str, checkpoint: Path, size: int, requests: int, compiled: bool = False) -> list[tuple]:
    import ray

    from adaptive_resnet.planning import Problem
    from adaptive_resnet.runtime.cluster import RayCluster
    from adaptive_resnet.system import parse_scenario

    model, config = model_from_checkpoint(checkpoint)
    torch.set_num_threads(1)  # as each worker: the machine has 2 cores and a training run may share them
    x = torch.randn(requests, 3, size, size)
    with torch.no_grad():
        for _ in range(WARM_UP):
            model(x[:1])
        mono_latency = median_s(lambda: model(x[:1]))
        t0 = time.perf_counter()
        for i in range(requests):
            model(x[i : i + 1])
        mono_throughput = requests / (time.perf_counter() - t0)
    rows = [(name, "monolithic", mono_latency, mono_throughput, mono_latency)]
    floors = []

    def mono() -> None:
        with torch.no_grad():
            model(x[:1])

    cores = len(os.sched_getaffinity(0))
    for workers in (2, 4):
        devices = "".join(f"  - {{name: w{i}, memory_mb: 1000, speed_gmacs: 10, compute_limit_gmac: 1000, energy_j: 1e6}}\n" for i in range(workers))
        scenario = parse_scenario(f"model: {{arch: {config.arch}, input_size: {size}, num_classes: {config.num_classes}, "
                                  f"stem: {config.stem}, base_channels: {config.base_channels}}}\naccuracy: paper\naccuracy_threshold: 0.5\n"
                                  f"devices:\n{devices}rates_mbps: {{default: 100}}\n")
        cluster = RayCluster(Problem(scenario), str(checkpoint), emulate_links=False, threads_per_worker=1)
        plan = split_plan(cluster.problem.units, cluster.problem.devices)
        rows.append((name, f"{workers} workers", *timed(cluster, x, plan, mono)))
        mono_s, relays_s = relay_chain_s(cluster, plan, x[:1], mono)
        floors.append((name, f"{workers} relays", relays_s, mono_s))
        if compiled and workers > cores:
            print(f"{name}: {workers} compiled skipped: {workers} busy-polling actors on {cores} cores stall "
                  "(seen: 4 on 2 cores ran > 10 min)", flush=True)
        elif compiled:
            # The same workers through one compiled graph. Its actors busy-poll and would slow a
            # monolithic model timed beside them, so it is compared with the mono time just taken.
            cluster.compiled.enabled = True
            latency, throughput, _ = timed(cluster, x, plan, None)
            rows.append((name, f"{workers} compiled", latency, throughput, rows[-1][4]))
            assert cluster.compiled.enabled, "the compiled path fell back to ordinary calls"
        cluster.shutdown()
    ray.shutdown()
    return rows, floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--cifar-checkpoint", default=None)
    parser.add_argument("--compiled", action="store_true",
                        help="Also time each split through a Ray Compiled Graph (where the machine has a core per worker).")
    args = parser.parse_args()
    rows, floors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data=".", arch="resnet50", stem="imagenet", base_channels=64, num_classes=1000)
        path = Path(tmp) / "r50.pt"
        torch.save({"model": build_model(config).state_dict(), "config": config.model_dump()}, path)
        for part, got in zip((rows, floors), measure("resnet50@224", path, 224, args.requests, args.compiled), strict=True):
            part += got
    if args.cifar_checkpoint:
        for part, got in zip((rows, floors), measure("cifar-r50w16@32", Path(args.cifar_checkpoint), 32, args.requests, args.compiled),
                             strict=True):
            part += got
    print(f"{'model':<16} {'setup':<11} {'latency_ms':>10} {'mono_ms':>8} {'vs mono':>8} {'req/s':>8} {'vs mono':>8}")
    for name, setup, latency, throughput, mono_latency in rows:
        mono = next(r for r in rows if r[0] == name and r[1] == "monolithic")
        print(f"{name:<16} {setup:<11} {latency * 1000:>10.1f} {mono_latency * 1000:>8.1f} {latency / mono_latency:>7.2f}x "
              f"{throughput:>8.2f} {throughput / mono[3]:>7.2f}x")
    print("(mono_ms: the monolithic model timed alternately with that set-up, for compiled rows with the row above; "
          "latency ratios are against it)")
    print("\nRay alone: a request through no-op actors passing the same activations, timed alternately with the monolithic "
          "model;\nfloor = (mono + relays) / mono, the least a split with those hops can cost here")
    print(f"{'model':<16} {'setup':<11} {'relays_ms':>10} {'mono_ms':>8} {'floor':>8}")
    for name, setup, relays_s, mono_s in floors:
        print(f"{name:<16} {setup:<11} {relays_s * 1000:>10.1f} {mono_s * 1000:>8.1f} {(mono_s + relays_s) / mono_s:>7.2f}x")
    r50 = [r for r in rows if r[0] == "resnet50@224" and r[1] != "monolithic"]
    print("target: ResNet-50@224 distributed latency <= 1.2x monolithic: "
          + ", ".join(f"{r[1]} {r[2] / r[4]:.2f}x" for r in r50))


if __name__ == "__main__":
    main()
