"""Shortest routes of one request through the devices, by dynamic programming.

For a fixed drop set the running units form a chain; placing them on devices is a shortest path
in a layered graph (layer = unit, node = device, node cost = Eq. 9, edge cost = Eq. 10/11). The
DP is exact and costs O(L N^2); with capacities ignored it gives every request's optimum, hence a
valid lower bound for the whole time step.
"""

from __future__ import annotations

import numpy as np

from adaptive_resnet.planning.problem import Candidate, Problem


def shortest_route(
    problem: Problem,
    cand: Candidate,
    allowed: np.ndarray | None = None,
    extra_cost: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Minimum-latency devices for ``cand``'s running units: (latency_s or inf, devices).

    ``allowed`` (L, N) masks device choices; ``extra_cost`` (L, N) adds a price per node, in
    seconds, for price-guided heuristics. The returned latency excludes the prices.
    """
    compute = problem.compute_s(cand)
    transfer = problem.transfer_s(cand)
    node = compute if extra_cost is None else compute + extra_cost
    mask = np.broadcast_to(problem.available, node.shape).copy()
    if allowed is not None:
        mask &= allowed
    node = np.where(mask, node, np.inf)
    L, N = node.shape
    cost = node[0].copy()
    back = np.zeros((L, N), int)
    for layer in range(1, L):
        total = cost[:, None] + transfer[layer - 1]  # (from i, to k)
        back[layer] = total.argmin(0)
        cost = total[back[layer], np.arange(N)] + node[layer]
    end = int(cost.argmin())
    if not np.isfinite(cost[end]):
        return float("inf"), np.zeros(L, int)
    devices = np.empty(L, int)
    devices[-1] = end
    for layer in range(L - 1, 0, -1):
        devices[layer - 1] = back[layer, devices[layer]]
    return problem.latency_s(cand, devices), devices


def best_unconstrained(problem: Problem) -> list[tuple[float, float, np.ndarray]]:
    """Per candidate: (per-request objective, latency_s, devices) with capacities ignored."""
    out = []
    for cand in problem.candidates:
        latency, devices = shortest_route(problem, cand)
        out.append((problem.objective(latency, cand.accuracy), latency, devices))
    return out


def segment_route(
    problem: Problem,
    cand: Candidate,
    memory_left: np.ndarray,
    compute_left: np.ndarray,
    energy_left: np.ndarray,
    hosted: np.ndarray,
    allowed: np.ndarray | None = None,
    node_price: np.ndarray | None = None,
    edge_price: np.ndarray | None = None,
    latency_weight: float = 1.0,
) -> tuple[float, np.ndarray]:
    """Minimum-latency route made of contiguous segments, each fitting its device's remainder.

    With prices, the DP minimises ``latency_weight * latency + node_price + edge_price`` instead
    (prices in the same units; :mod:`~adaptive_resnet.planning.colgen` prices columns with it).

    A route visits a device in one contiguous run of units (a *segment*); the DP is over segment
    ends, so each segment's total compute, memory (with weights not yet hosted there) and
    compute energy are checked against what the device has left. ``allowed`` (L, N) masks
    unit-device pairs. Transmit energy and a device revisited by two segments are not seen
    here: :func:`capacity_route` handles both.
    """
    L, N = len(cand.units), len(problem.devices)
    compute_t = problem.compute_s(cand)
    transfer = problem.transfer_s(cand) * latency_weight
    if edge_price is not None:
        transfer = transfer + edge_price
    transfer[:, np.arange(N), np.arange(N)] = np.inf  # a segment boundary changes device
    step = compute_t * latency_weight if node_price is None else compute_t * latency_weight + node_price
    cum_t = np.vstack([np.zeros(N), np.cumsum(step, 0)])
    cum_macs = np.concatenate([[0.0], np.cumsum(cand.macs)])
    mem = cand.memory_bytes[:, None] + (problem.weight_bytes[cand.units][:, None] * ~hosted[cand.units] if problem.shared_weights else 0.0)
    cum_mem = np.vstack([np.zeros(N), np.cumsum(np.broadcast_to(mem, (L, N)), 0)])
    cum_energy = np.vstack([np.zeros(N), np.cumsum(compute_t, 0)]) * problem.compute_w
    banned = ~problem.available[None, :] if allowed is None else ~(allowed & problem.available[None, :])
    cum_banned = np.vstack([np.zeros(N), np.cumsum(np.broadcast_to(banned, (L, N)), 0)])
    # Every segment [a, b) on every device at once, (L+1, L+1, N): which fit, and their cost.
    # (Infinite where b <= a.) The DP below then only does the min-plus over segment ends.
    tol = 1 + 1e-9
    fits = ((cum_macs[None, :] - cum_macs[:, None])[:, :, None] <= compute_left[None, None, :] * tol) \
        & (cum_mem[None, :, :] - cum_mem[:, None, :] <= memory_left[None, None, :] * tol) \
        & (cum_energy[None, :, :] - cum_energy[:, None, :] <= energy_left[None, None, :] * tol) \
        & (cum_banned[None, :, :] - cum_banned[:, None, :] == 0)
    fits &= np.triu(np.ones((L + 1, L + 1), bool), 1)[:, :, None]
    seg_cost = np.where(fits, cum_t[None, :, :] - cum_t[:, None, :], np.inf)  # [a, b, k]
    best = np.full((L + 1, N), np.inf)
    enter = np.full((L + 1, N), np.inf)  # cost to start a segment at unit a on device k
    enter[0] = 0.0
    enter_from = np.zeros((L + 1, N), int)
    seg_start = np.zeros((L + 1, N), int)
    columns = np.arange(N)
    for b in range(1, L + 1):
        total = enter[:b] + seg_cost[:b, b]
        seg_start[b] = total.argmin(0)
        best[b] = total[seg_start[b], columns]
        if b < L:
            via = best[b][:, None] + transfer[b - 1]  # from device i (ending at b-1) to k
            enter_from[b] = via.argmin(0)
            enter[b] = via[enter_from[b], columns]
    end = int(best[L].argmin())
    if not np.isfinite(best[L, end]):
        return float("inf"), np.zeros(L, int)
    devices = np.empty(L, int)
    b, k = L, end
    while b > 0:
        a = seg_start[b, k]
        devices[a:b] = k
        k, b = (enter_from[a, k], a) if a > 0 else (k, 0)
    return problem.latency_s(cand, devices), devices


def capacity_route(
    problem: Problem,
    cand: Candidate,
    memory_left: np.ndarray,
    compute_left: np.ndarray,
    energy_left: np.ndarray,
    hosted: np.ndarray,
    overflow,
    retries: int = 6,
) -> tuple[float, np.ndarray] | None:
    """A route whose per-device totals fit, built from :func:`segment_route`.

    When the best segment route comes back to a device, the device is barred from every unit
    after its first segment and the route is recomputed (each round bars more, so this ends).
    When the whole route still overflows (transmit energy, which the segment DP does not see),
    the overflowing devices' budgets are halved for another try. ``overflow(devices)`` returns
    the per-device overflow of a route (<= 0: fits).
    """
    L, N = len(cand.units), len(problem.devices)
    allowed = np.ones((L, N), bool)
    share = np.ones(N)
    for _ in range(N + retries):
        latency, devices = segment_route(problem, cand, memory_left * share, compute_left * share, energy_left * share, hosted, allowed)
        if not np.isfinite(latency):
            return None
        revisited = False
        for k in np.unique(devices):
            where = np.flatnonzero(devices == k)
            if where[-1] - where[0] + 1 != len(where):  # not one contiguous run
                first_end = where[0] + np.argmax(np.diff(np.append(where, L + 1)) > 1)
                allowed[first_end + 1 :, k] = False
                revisited = True
        if revisited:
            continue
        over = overflow(devices)
        if (over <= 1e-9).all():
            return latency, devices
        share[over > 1e-9] *= 0.5
    return None


def single_request_bound(problem: Problem) -> float:
    """A lower bound on every request's objective that respects each device's capacities.

    Whatever the other requests do, one request's units on a device cannot exceed that device's
    whole memory, compute and energy; the segment DP with full capacities enforces this per
    contiguous segment, a relaxation of the per-device totals, so its optimum is a valid bound.
    It is far tighter than the capacity-free bound when a whole network fits no single device.
    """
    empty = np.zeros((len(problem.units), len(problem.devices)), bool)
    best = np.inf
    for cand in problem.candidates:
        floor = problem.objective(0.0, cand.accuracy)
        if floor >= best:
            continue
        latency, _ = segment_route(problem, cand, problem.memory_limit_bytes, problem.compute_limit_macs, problem.energy_limit_j, empty)
        best = min(best, problem.objective(latency, cand.accuracy))
    return best
