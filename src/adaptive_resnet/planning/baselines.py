"""Strategies of other distributed-inference systems, as planners over the same cost model.

None of them drops blocks; each places the full network its own way, and the plan is judged by
the same :meth:`Problem.evaluate` as ours.

* ``no-drop``: plain distributed inference: our capacity-aware routing (the ``fast`` solver)
  restricted to the full network.
* ``neurosurgeon``: one split point between two devices (Kang et al., ASPLOS 2017): the head of
  the network on one device, the tail on another, the same for every request; the (device,
  device, split) with the lowest latency among those that fit the devices, else the fastest.
* ``exo``: a contiguous split over all devices in proportion to their memory (exo's
  memory-weighted ring partitioning), the same for every request.
* ``petals``: servers host contiguous spans of blocks sized by memory, overlapping so that
  every block has two hosts where possible (Petals-style swarm); each request takes the
  latency-shortest route through the hosted blocks.
"""

from __future__ import annotations

import time

import numpy as np

from adaptive_resnet.planning.problem import Problem, RequestPlan
from adaptive_resnet.planning.routing import shortest_route
from adaptive_resnet.planning.solution import Solution


def _full(problem: Problem) -> tuple[Problem, int]:
    full = problem.restricted_to(lambda c: not c.plan)
    return full, problem.candidates.index(full.candidates[0])


def solve_no_drop(problem: Problem) -> Solution:
    from adaptive_resnet.planning.fast import solve_fast

    t0 = time.perf_counter()
    full, index = _full(problem)
    sol = solve_fast(full)
    requests = [RequestPlan(index, r.devices) for r in sol.requests]
    return Solution("no-drop", requests, problem.evaluate(requests), time.perf_counter() - t0)


def solve_neurosurgeon(problem: Problem) -> Solution:
    t0 = time.perf_counter()
    full, index = _full(problem)
    cand = full.candidates[0]
    L = len(cand.units)
    alive = np.flatnonzero(problem.available)
    options = []
    for a in alive:
        for b in alive:
            for split in range(1, L + 1):  # split == L: everything on a
                devices = np.where(np.arange(L) < split, a, b)
                options.append((problem.latency_s(cand, devices), devices))
    options.sort(key=lambda o: o[0])
    chosen = options[0][1]
    for _, devices in options:  # fastest first; the first that fits wins
        if problem.evaluate([RequestPlan(index, devices)] * problem.requests).feasible:
            chosen = devices
            break
    requests = [RequestPlan(index, chosen) for _ in range(problem.requests)]
    return Solution("neurosurgeon", requests, problem.evaluate(requests), time.perf_counter() - t0)


def _memory_spans(problem: Problem, L: int, overlap: float) -> list[tuple[int, int, int]]:
    """(device, first unit, end unit) spans covering 0..L in proportion to memory."""
    alive = np.flatnonzero(problem.available)
    share = problem.memory_limit_bytes[alive] / problem.memory_limit_bytes[alive].sum()
    bounds = np.concatenate([[0.0], np.cumsum(share)]) * L
    spans = []
    for n, d in enumerate(alive):
        start = int(round(bounds[n]))
        end = int(round(bounds[n + 1]))
        width = max(end - start, 1)
        extra = int(round(width * overlap))
        spans.append((int(d), max(0, start - extra), min(L, max(end, start + 1) + extra)))
    return spans


def solve_exo(problem: Problem) -> Solution:
    t0 = time.perf_counter()
    full, index = _full(problem)
    L = len(full.candidates[0].units)
    devices = np.zeros(L, int)
    for d, start, end in _memory_spans(problem, L, overlap=0.0):
        devices[start:end] = d
    requests = [RequestPlan(index, devices.copy()) for _ in range(problem.requests)]
    return Solution("exo", requests, problem.evaluate(requests), time.perf_counter() - t0)


def solve_petals(problem: Problem) -> Solution:
    t0 = time.perf_counter()
    full, index = _full(problem)
    cand = full.candidates[0]
    L = len(cand.units)
    hosted = np.zeros((L, len(problem.devices)), bool)
    for d, start, end in _memory_spans(problem, L, overlap=0.5):
        hosted[start:end, d] = True
    _, devices = shortest_route(problem, cand, allowed=hosted)
    requests = [RequestPlan(index, devices) for _ in range(problem.requests)]
    return Solution("petals", requests, problem.evaluate(requests), time.perf_counter() - t0)


BASELINES = {"no-drop": solve_no_drop, "neurosurgeon": solve_neurosurgeon, "exo": solve_exo, "petals": solve_petals}
