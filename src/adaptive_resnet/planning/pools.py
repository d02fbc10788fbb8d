"""Planning a large fleet pool by pool: a route needs a few devices, not hundreds.

The route DPs cost O(L^2 N^2) and their tables O(L N^2) memory per drop set (at N = 1000, 136 MB
of transfer times per drop set), so a fleet of hundreds of devices is cut into pools of
``POOL_SIZE`` devices, each a small problem of its own (:meth:`Problem.subset`, with the
fleet's L_ref so objectives compare). Requests of a step are interchangeable (same model, same
input), so the best pool is given as many of them as it can serve (admission: :func:`solve_fast`
with ``admit``), the next pool the rest, and so on: the plan is made in one pass over the pools,
linear in N, with no solve repeated. A route never crosses pools; with pools of well-connected
fast devices first, the routes it would cross for are the few a capacity-free route would take
anyway.

Pools are formed greedily: the fastest device left seeds a pool, which then takes the devices
with the best sum of (normalised) speed and mean link rate to the pool's members so far.
"""

from __future__ import annotations

import time

import numpy as np

from adaptive_resnet.planning.problem import Problem, RequestPlan
from adaptive_resnet.planning.solution import Solution

POOL_SIZE = 16  # devices a pool: the paper's scale, where fast plans in milliseconds
POOLED_ABOVE = 48  # fleets of more devices are planned pool by pool
SPILL_PASSES = 4  # passes over the devices with the most left, for requests no pool took


def capacity_score(memory_bytes: np.ndarray, compute_macs: np.ndarray, among) -> np.ndarray:
    """How much each device can hold: its memory and its compute, each as a fraction of the
    largest among the devices ``among`` (indices), averaged. Used to form pools and spill pools."""
    return 0.5 * (memory_bytes / max(memory_bytes[among].max(), 1.0) + compute_macs / max(compute_macs[among].max(), 1.0))


def form_pools(problem: Problem, size: int = POOL_SIZE) -> list[np.ndarray]:
    """The fleet's available devices in pools of ``size`` (the last may be up to 1.5x it), best
    pool first."""
    left = list(np.flatnonzero(problem.available))
    if not left:
        return []
    speed = problem.speed_macs / problem.speed_macs[left].max()
    # Capacity counts as much as speed: a pool of fast devices that cannot hold a segment serves
    # nothing (N = 1000, R = 10 with a planted plan: 6 requests fit no pool when pools ignored it).
    speed = speed + capacity_score(problem.memory_limit_bytes, problem.compute_limit_macs, left)
    finite = np.where(np.isfinite(problem.rate_bps), problem.rate_bps, 0.0)
    rate = finite / max(finite[np.ix_(left, left)].max(), 1.0)
    pools = []
    remaining = np.zeros(len(problem.devices), bool)
    remaining[left] = True
    while remaining.any():
        if remaining.sum() <= size * 1.5:
            pools.append(np.flatnonzero(remaining))
            break
        candidates = np.flatnonzero(remaining)
        seed = int(candidates[np.argmax(speed[candidates])])
        members = [seed]
        remaining[seed] = False
        link_sum = rate[seed].copy()
        while len(members) < size:
            candidates = np.flatnonzero(remaining)
            score = speed[candidates] + link_sum[candidates] / len(members)
            pick = int(candidates[np.argmax(score)])
            members.append(pick)
            remaining[pick] = False
            link_sum += rate[pick]
        pools.append(np.array(members))
    return pools


def solve_pooled(problem: Problem, solver: str = "fast", admit: bool = False, time_limit_s: float | None = None) -> Solution:
    """The fleet's plan, pool by pool (see the module). Without ``admit``, requests that no pool
    can take are given their capacity-free best route in the best pool, so the plan's
    evaluation names what they violate, as ``fast`` does on a small fleet."""
    from adaptive_resnet.planning.fast import solve_fast

    t0 = time.perf_counter()
    deadline = t0 + time_limit_s if time_limit_s is not None else float("inf")
    R = problem.requests
    requests: list[RequestPlan] = []
    reason = ""
    pools = form_pools(problem)
    for pool in pools:
        left = R - len(requests)
        if left == 0:
            break
        if time.perf_counter() > deadline:
            reason = reason or f"time limit: {time_limit_s:g} s spent before every pool was tried"
            break
        sub = problem.subset(pool, left)
        sol = solve_fast(sub, admit=True, grow=False)
        requests += [RequestPlan(r.candidate, pool[np.asarray(r.devices, int)]) for r in sol.requests]
        if sol.unserved_reason:
            reason = sol.unserved_reason
    # Requests left after every pool: pools of the devices with the most left over (what the
    # first pass left on each, across pools), solved with every effort to serve more.
    for _ in range(SPILL_PASSES):
        left = R - len(requests)
        if left == 0 or time.perf_counter() > deadline:
            break
        pool, sub = spill_pool(problem, requests, left)
        if pool is None:
            break
        sol = solve_fast(sub, admit=True)
        if not sol.requests:
            break
        requests += [RequestPlan(r.candidate, pool[np.asarray(r.devices, int)]) for r in sol.requests]
        reason = sol.unserved_reason or reason
    unplaced = R - len(requests)
    if unplaced and not admit and pools:
        # Not admitting: the plan names the violation, with the rest on the best pool's capacity-free best.
        sub = problem.subset(pools[0], 1)
        from adaptive_resnet.planning.routing import SearchOrder

        search = SearchOrder.of(sub)
        c = search.order[0]
        requests += [RequestPlan(c, pools[0][search.shortest[c][1]])] * unplaced
    evaluation = problem.evaluate(requests, requests=len(requests) if admit else None)
    note = f"pooled: {len(pools)} pools of about {POOL_SIZE} devices"
    if unplaced:
        note += f"; admitted {R - unplaced} of {R}: {reason}" if admit else f"; {unplaced} request(s) fit no pool ({reason})"
    return Solution(solver, requests, evaluation, time.perf_counter() - t0, lower_bound=compute_bound(problem), note=note,
                    unserved_reason=reason if admit and unplaced else "")


def spill_pool(problem: Problem, requests: list[RequestPlan], left: int):
    """(devices, subset problem) of the ``POOL_SIZE`` devices with the most capacity left beside
    ``requests``, with what is left as their capacities (weights a device already hosts count
    as used: a conservative remainder), or (None, None) when none has any left."""
    memory, compute, energy = problem.remaining(requests)
    room = capacity_score(memory, compute, slice(None)) * problem.available
    if not room.any():
        return None, None
    pool = np.sort(np.argsort(-room)[:POOL_SIZE])
    return pool, problem.subset(pool, left, memory[pool], compute[pool], energy[pool])


def compute_bound(problem: Problem) -> float:
    """A lower bound on the per-request objective that needs no route: each drop set's compute
    on the fastest available device, no transfer (a route of several devices only adds to it).
    Valid for any fleet and costs O(drop sets); on a small fleet the capacity-free DP's bound
    (``SearchOrder``) is tighter."""
    fastest = problem.speed_macs[problem.available].max()
    return min(problem.objective(float(c.macs.sum()) / fastest, c.accuracy) for c in problem.candidates)
