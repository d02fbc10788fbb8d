"""Shortest routes of one request through the devices, by dynamic programming.

For a fixed drop set the running units form a chain; placing them on devices is a shortest path
in a layered graph (layer = unit, node = device, node cost = Eq. 9, edge cost = Eq. 10/11). The
DP is exact and costs O(L N^2); with capacities ignored it gives every request's optimum, hence a
valid lower bound for the whole time step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from adaptive_resnet.planning.problem import Candidate, Problem, route_usage, weights_to_host


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
    node = compute if extra_cost is None else compute + extra_cost
    mask = allowed is not None
    allowed = np.ones((1, 1), np.bool_) if allowed is None else np.ascontiguousarray(allowed, np.bool_)
    cost, devices = _shortest(node, problem.unit_transfer_s(), cand.units, problem.available, mask, allowed)
    if not np.isfinite(cost):
        return float("inf"), devices
    return problem.latency_s(cand, devices), devices


@numba.njit(cache=True)
def _shortest(node, transfer, units, available, mask, allowed):
    """The masked chain DP and its walk back in one compiled call: (cost, devices), cost inf
    (devices zeros) if no route. ``allowed`` (L, N) counts where ``mask`` is true. In numpy the
    masking and the walk back cost 5x the DP (~85 us a route at N = 30, and ``SearchOrder``
    routes every drop set of every step)."""
    L, N = node.shape
    masked = np.empty((L, N))
    for u in range(L):
        for k in range(N):
            ok = available[k] and (not mask or allowed[u, k])
            masked[u, k] = node[u, k] if ok else np.inf
    cost, back = _chain_dp(masked, transfer, units)
    end, low = 0, cost[0]
    for k in range(1, N):  # ties to the lowest index, as numpy's argmin
        if cost[k] < low:
            end, low = k, cost[k]
    devices = np.zeros(L, np.int64)
    if low == np.inf:
        return low, devices
    devices[L - 1] = end
    for layer in range(L - 1, 0, -1):
        devices[layer - 1] = back[layer, devices[layer]]
    return low, devices


@numba.njit(cache=True)
def _chain_dp(node: np.ndarray, transfer: np.ndarray, units: np.ndarray):
    """Layer by layer, the cheapest way to run unit ``layer`` on each device (compiled, for the
    reason given at :func:`_segment_dp`); ``transfer[units[layer]]`` is what leaving layer costs
    (:meth:`Problem.unit_transfer_s`). Returns the last layer's costs and the back pointers."""
    L, N = node.shape
    cost = node[0].copy()
    back = np.zeros((L, N), np.int64)
    for layer in range(1, L):
        new = np.empty(N)
        for k in range(N):
            low, arg = np.inf, 0
            for i in range(N):
                v = cost[i] + transfer[units[layer - 1], i, k]  # from device i to k
                if v < low:
                    low, arg = v, i
            new[k], back[layer, k] = low + node[layer, k], arg
        cost = new
    return cost, back


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
    segment_price: SegmentPrices | None = None,
) -> tuple[float, np.ndarray]:
    """Minimum-latency route made of contiguous segments, each fitting its device's remainder.

    With prices, the DP minimises ``latency_weight * latency + node_price + edge_price`` instead
    (prices in the same units; :mod:`~adaptive_resnet.planning.colgen` prices columns with it).
    ``segment_price`` (:class:`SegmentPrices`): what a segment pays for the resources it uses,
    once per segment.

    A route visits a device in one contiguous run of units (a *segment*); the DP is over segment
    ends, so each segment's total compute, memory (with weights not yet hosted there) and
    compute energy are checked against what the device has left. ``allowed`` (L, N) masks
    unit-device pairs. Transmit energy and a device revisited by two segments are not seen
    here: :func:`capacity_route` handles both.
    """
    L, N = len(cand.units), len(problem.devices)
    static = _static_tables(problem, cand)
    if node_price is None and edge_price is None and latency_weight == 1.0:
        cum_t, transfer, sends = static["cum_t"], problem.unit_transfer_s(barred_self=True), cand.units
    else:
        sends = np.arange(L)  # the priced table below is by running unit
        compute_t = problem.compute_s(cand)
        transfer = problem.transfer_s(cand) * latency_weight
        if edge_price is not None:
            transfer = transfer + edge_price
        transfer[:, np.arange(N), np.arange(N)] = np.inf  # a segment boundary changes device
        step = compute_t * latency_weight if node_price is None else compute_t * latency_weight + node_price
        cum_t = _cumulative(step)
    cum_mem = _memory_table(cand.memory_bytes, problem.weight_bytes, cand.units, hosted, problem.shared_weights)
    if allowed is None:
        cum_banned = static["cum_banned"]
    else:
        cum_banned = _ban_table(allowed, problem.available)
    cum_macs, cum_energy = static["cum_macs"], static["cum_energy"]
    # The segment prices as short per-device lists of (resource, threshold, price), the priced
    # ones only: most of column generation's rows have no price, and the DP checks each list
    # for every segment it weighs.
    if segment_price is None or not segment_price.priced():
        cum_res, *pen = _unpriced(N)
    else:
        cum_res = np.stack([np.broadcast_to(cum_macs[:, None], (L + 1, N)), static["cum_act"], cum_energy,
                            np.broadcast_to(static["cum_weights"][:, None], (L + 1, N))], axis=1)
        pen = segment_price.arrays()
    cost, devices = _segment_dp(
        cum_t, cum_macs, cum_mem, cum_energy, cum_banned, np.asarray(compute_left, float), np.asarray(memory_left, float),
        np.asarray(energy_left, float), 1 + 1e-9, np.ascontiguousarray(transfer), sends, cum_res, *pen)
    if not np.isfinite(cost):
        return float("inf"), devices
    # Unpriced, the DP's cost is the latency (summed in another order: equal to rounding).
    priced = node_price is not None or edge_price is not None or latency_weight != 1.0 or segment_price is not None
    return (problem.latency_s(cand, devices) if priced else float(cost)), devices


@dataclass
class SegmentPrices:
    """Prices a segment pays in the segment DP, as short per-device lists: on device k, entry
    m < count[k] charges price[k, m] when the segment's use of resource[k, m] (0 compute,
    1 activation memory, 2 compute energy: :func:`segment_usage`) exceeds threshold[k, m]."""

    resource: np.ndarray  # (N, M) int
    threshold: np.ndarray  # (N, M)
    price: np.ndarray  # (N, M)
    count: np.ndarray  # (N,) int
    # Also, on device k, ratio_price[k] * activations / (room[k] - weights) of the segment's units
    # (colgen's memory ratio rows); zero prices: none.
    ratio_price: np.ndarray | None = None  # (N,)
    room: np.ndarray | None = None  # (N,) bytes

    @classmethod
    def none(cls, N: int) -> SegmentPrices:
        return cls(np.zeros((N, 0), np.int64), np.zeros((N, 0)), np.zeros((N, 0)), np.zeros(N, np.int64))

    def priced(self) -> bool:
        return bool(self.count.any() or (self.ratio_price is not None and self.ratio_price.any()))

    @classmethod
    def of(cls, thresholds: np.ndarray, prices: np.ndarray, ratio_price: np.ndarray | None = None,
           room: np.ndarray | None = None) -> SegmentPrices:
        """From (3, Q, N) thresholds and prices; only the priced entries are kept (most of
        column generation's rows have none, and the DP checks each list for every segment)."""
        N = thresholds.shape[2]
        r, q, k = np.nonzero(prices > 0)
        order = np.argsort(k, kind="stable")
        r, q, k = r[order], q[order], k[order]
        count = np.bincount(k, minlength=N).astype(np.int64)
        slot = np.arange(len(k)) - np.repeat(np.cumsum(count) - count, count)
        M = max(int(count.max()) if N else 0, 1)
        out = cls(np.zeros((N, M), np.int64), np.zeros((N, M)), np.zeros((N, M)), count, ratio_price, room)
        out.resource[k, slot], out.threshold[k, slot], out.price[k, slot] = r, thresholds[r, q, k], prices[r, q, k]
        return out

    def arrays(self):
        N = len(self.count)
        ratio = np.zeros(N) if self.ratio_price is None else np.asarray(self.ratio_price, float)
        room = np.ones(N) if self.room is None else np.asarray(self.room, float)
        return self.resource, self.threshold, self.price, self.count, ratio, room


@functools.lru_cache(maxsize=8)
def _unpriced(N: int):
    """The segment DP's price inputs when segments pay nothing (made once: most calls)."""
    return (np.zeros((0, 4, N)), *SegmentPrices.none(N).arrays())


def _cumulative(per_unit: np.ndarray) -> np.ndarray:
    """(L+1, ...) prefix sums with a zero row first: segment [a, b) sums to row b - row a."""
    out = np.zeros((per_unit.shape[0] + 1, *per_unit.shape[1:]))
    np.cumsum(per_unit, 0, out=out[1:])
    return out


def _static_tables(problem: Problem, cand: Candidate) -> dict:
    """The parts of the segment DP's input that depend on the drop set alone, not on what the
    devices have left: computed once per (problem, drop set), since the heuristics route the
    same drop sets many times a step."""

    def make() -> dict:
        L, N = len(cand.units), len(problem.devices)
        cum_t, cum_macs, cum_energy, cum_act, cum_weights = _static_sums(
            problem.compute_s(cand), cand.macs.astype(float), cand.memory_bytes.astype(float),
            problem.weight_bytes[cand.units].astype(float), float(problem.compute_w))
        return {"cum_t": cum_t, "cum_macs": cum_macs, "cum_energy": cum_energy, "cum_act": cum_act, "cum_weights": cum_weights,
                "cum_banned": _ban_table(np.ones((L, N), np.bool_), problem.available)}

    return problem.per_candidate("segment_tables", cand, make)


@numba.njit(cache=True)
def _static_sums(compute_t, macs, activations, weights, compute_w):
    """:func:`_static_tables`' prefix sums (as :func:`_cumulative` makes them, added in the same
    order) in one compiled call: in numpy, ten small array calls per drop set took ~0.1 ms,
    and a pooled fleet builds them for every drop set of every pool (N = 100, R = 100: 80 a
    solve)."""
    L, N = compute_t.shape
    cum_t = np.zeros((L + 1, N))
    cum_energy = np.zeros((L + 1, N))
    cum_act = np.zeros((L + 1, N))
    cum_macs = np.zeros(L + 1)
    cum_weights = np.zeros(L + 1)
    for u in range(L):
        cum_macs[u + 1] = cum_macs[u] + macs[u]
        cum_weights[u + 1] = cum_weights[u] + weights[u]
        for k in range(N):
            cum_t[u + 1, k] = cum_t[u, k] + compute_t[u, k]
            cum_act[u + 1, k] = cum_act[u, k] + activations[u]
    for u in range(L + 1):
        for k in range(N):
            cum_energy[u, k] = cum_t[u, k] * compute_w
    return cum_t, cum_macs, cum_energy, cum_act, cum_weights


@numba.njit(cache=True)
def _segment_dp(cum_t, cum_macs, cum_mem, cum_energy, cum_banned, compute_left, memory_left, energy_left, tol, transfer,
                sends, cum_res, pen_r, pen_t, pen_p, pen_n, ratio_price, room):
    """The DP over segment ends, compiled: a segment [a, b) on device k costs
    cum_t[b, k] - cum_t[a, k] and fits when its compute, memory and energy (differences of the
    cumulative sums) are within what k has left and it crosses no banned unit. In numpy this
    was an (L+1, L+1, N) tensor and ~8 small array calls per unit, which made it the heuristics'
    bottleneck (0.36 ms a route at N = 30). Ties go to the lowest index, as numpy's argmin does.

    A segment on k also pays pen_p[k, m] for each m < pen_n[k] where its use of resource
    pen_r[k, m] (from ``cum_res``, (L+1, 4, N): compute, activations, compute energy, weights)
    exceeds pen_t[k, m], and ratio_price[k] * activations / (room[k] - weights). Leaving running
    unit l from device i to k costs ``transfer[sends[l], i, k]`` (inf for i = k): the shared
    per-unit table (:meth:`Problem.unit_transfer_s`, ``sends`` the units) or a priced one by
    running unit (``sends`` 0..L-1).

    What a device has left is scaled by ``tol`` (1 + 1e-9), so a segment that exactly fills it fits.
    Returns (cost, devices): the cheapest route's cost (inf if none fits) and its device per unit.
    """
    L, N = cum_t.shape[0] - 1, cum_t.shape[1]
    best = np.full((L + 1, N), np.inf)
    enter = np.full((L + 1, N), np.inf)  # cost to start a segment at unit a on device k
    enter[0, :] = 0.0
    enter_from = np.zeros((L + 1, N), np.int64)
    seg_start = np.zeros((L + 1, N), np.int64)
    for b in range(1, L + 1):
        for k in range(N):
            low, arg = np.inf, 0
            # Segments [a, b) from the shortest out: compute, memory, energy and barred units
            # only grow as a goes down (every unit's use is >= 0), so the first that does not
            # fit ends the search; "<=" keeps the tie rule (the lowest a).
            for a in range(b - 1, -1, -1):
                if cum_banned[b, k] != cum_banned[a, k]:
                    break
                if (cum_macs[b] - cum_macs[a] > compute_left[k] * tol or cum_mem[b, k] - cum_mem[a, k] > memory_left[k] * tol
                        or cum_energy[b, k] - cum_energy[a, k] > energy_left[k] * tol):
                    break
                if enter[a, k] == np.inf:
                    continue
                v = enter[a, k] + (cum_t[b, k] - cum_t[a, k])
                for m in range(pen_n[k]):
                    r = pen_r[k, m]
                    if cum_res[b, r, k] - cum_res[a, r, k] > pen_t[k, m]:
                        v += pen_p[k, m]
                if ratio_price[k] > 0:
                    left = room[k] - (cum_res[b, 3, k] - cum_res[a, 3, k])
                    v += ratio_price[k] * (cum_res[b, 1, k] - cum_res[a, 1, k]) / left if left > 0 else np.inf
                if v <= low and v < np.inf:
                    low, arg = v, a
            best[b, k], seg_start[b, k] = low, arg
        if b < L:
            # From device i (a segment ending at b - 1) to k: only the i a segment can end on,
            # row by row (contiguous in memory); the lowest i wins ties, as before.
            out = transfer[sends[b - 1]]
            for i in range(N):
                here = best[b, i]
                if here == np.inf:
                    continue
                for k in range(N):
                    v = here + out[i, k]
                    if v < enter[b, k]:
                        enter[b, k], enter_from[b, k] = v, i
    # The cheapest last segment's end, ties to the lowest index (as numpy's argmin), then back.
    end, cost = 0, best[L, 0]
    for k in range(1, N):
        if best[L, k] < cost:
            end, cost = k, best[L, k]
    devices = np.zeros(L, np.int64)
    if cost == np.inf:
        return cost, devices
    b, k = L, end
    while b > 0:
        a = seg_start[b, k]
        devices[a:b] = k
        if a > 0:
            k = enter_from[a, k]
        b = a
    return cost, devices


class BudgetSpent(Exception):
    """Raised by :meth:`RouteBudget.spend` when no segment DP is left."""


@dataclass
class RouteBudget:
    """A number of segment DPs a search may run: a deterministic stand-in for a time limit
    (each costs ~0.1 ms here), so a plan does not depend on how busy the machine was."""

    left: int

    def spend(self) -> None:
        if self.left <= 0:
            raise BudgetSpent
        self.left -= 1


FIT_TOLERANCE = 1e-9  # relative overflow still taken as fitting (rounding)


@numba.njit(cache=True)
def route_overflow(memory, used, energy, memory_left, compute_left, energy_left):
    """Per device, the largest relative overflow of memory, compute or energy a route's use
    makes of what is left (<= FIT_TOLERANCE: fits); the one home of that rule."""
    N = memory.shape[0]
    out = np.empty(N)
    for k in range(N):
        out[k] = max((memory[k] - memory_left[k]) / max(memory_left[k], 1.0), (used[k] - compute_left[k]) / max(compute_left[k], 1.0),
                     (energy[k] - energy_left[k]) / max(energy_left[k], 1e-9))
    return out


def capacity_route(
    problem: Problem,
    cand: Candidate,
    memory_left: np.ndarray,
    compute_left: np.ndarray,
    energy_left: np.ndarray,
    hosted: np.ndarray,
    rounds: int = 10,
    budget: RouteBudget | None = None,
) -> tuple[float, np.ndarray] | None:
    """A route whose per-device totals fit what is left, built from segment DPs (None if none
    is found in ``rounds`` of them).

    When the best segment route comes back to a device, the device is barred from every unit
    after its first segment and the route is recomputed (each round bars more). When the whole
    route still overflows (transmit energy, which the segment DP does not see), the
    overflowing devices' budgets are halved for another try. The loop runs compiled
    (:func:`_capacity_route`): in Python its bookkeeping cost twice the DPs themselves, and
    ``fast`` runs it for nearly every request of a tight step. ``budget`` is charged one DP
    per round; when it runs out first, :class:`BudgetSpent` is raised as by
    :meth:`RouteBudget.spend`.
    """
    N = len(problem.devices)
    static = _static_tables(problem, cand)
    allowed_dps = rounds if budget is None else min(rounds, budget.left)
    pen = _unpriced(N)
    status, dps, cost, devices = _capacity_route(
        static["cum_t"], problem.unit_transfer_s(barred_self=True), static["cum_macs"], static["cum_energy"], static["cum_banned"],
        cand.memory_bytes, problem.weight_bytes, cand.units, hosted, problem.shared_weights, problem.available,
        np.asarray(memory_left, float), np.asarray(compute_left, float), np.asarray(energy_left, float),
        cand.macs, cand.output_bytes, problem.speed_macs, problem.rate_bps, problem.compute_w, problem.transmit_w,
        allowed_dps, *pen)
    if budget is not None:
        budget.left -= dps
        if status == _RAN_OUT and allowed_dps < rounds:
            raise BudgetSpent
    return (float(cost), devices) if status == _FOUND else None


_FOUND, _NONE, _RAN_OUT = 0, 1, 2


@numba.njit(cache=True)
def _ban_table(allowed, available):
    """(L+1, N) cumulative count of units barred from each device (not allowed there, or the
    device unavailable): a segment [a, b) on k crosses none when the counts at a and b agree.
    The one home of that table: the static one, segment_route's with a mask, and
    capacity_route's loop, which bars more each round."""
    L, N = allowed.shape
    out = np.zeros((L + 1, N))
    for u in range(L):
        for k in range(N):
            out[u + 1, k] = out[u, k] + (0.0 if allowed[u, k] and available[k] else 1.0)
    return out


@numba.njit(cache=True)
def _memory_table(activations, weight_bytes, units, hosted, shared):
    """(L+1, N) cumulative memory a route's units take on each device: activations, plus in
    ``shared-weights`` mode the weights of units not hosted there yet (compiled: both route
    searches build it for every route they weigh)."""
    L, N = activations.shape[0], hosted.shape[1]
    out = np.zeros((L + 1, N))
    for u in range(L):
        for k in range(N):
            out[u + 1, k] = out[u, k] + activations[u] + (weight_bytes[units[u]] if shared and not hosted[units[u], k] else 0.0)
    return out


@numba.njit(cache=True)
def _capacity_route(cum_t, transfer, cum_macs, cum_energy, cum_banned_static, activations, weight_bytes, units, hosted, shared,
                    available, memory_left, compute_left, energy_left, macs, output_bytes, speed_macs, rate_bps, compute_w,
                    transmit_w, max_dps, cum_res, pen_r, pen_t, pen_p, pen_n, ratio_price, room):
    """The loop of :func:`capacity_route`: (status, DPs run, latency, devices)."""
    L, N = cum_t.shape[0] - 1, cum_t.shape[1]
    allowed = np.ones((L, N), np.bool_)
    barred = False
    memory_try, compute_try, energy_try = memory_left.copy(), compute_left.copy(), energy_left.copy()
    cum_mem = _memory_table(activations, weight_bytes, units, hosted, shared)
    devices = np.zeros(L, np.int64)
    for dp in range(max_dps):
        cum_banned = _ban_table(allowed, available) if barred else cum_banned_static
        cost, devices = _segment_dp(cum_t, cum_macs, cum_mem, cum_energy, cum_banned, compute_try, memory_try, energy_try,
                                    1 + 1e-9, transfer, units, cum_res, pen_r, pen_t, pen_p, pen_n, ratio_price, room)
        if cost == np.inf:
            return _NONE, dp + 1, cost, devices
        # A device met again after its first segment: bar it from there on, and route again.
        first_end = np.full(N, -1)
        revisited = False
        for u in range(L):
            k = devices[u]
            if u > 0 and devices[u - 1] != k and first_end[k] >= 0:
                revisited = True
                for v in range(first_end[k], L):
                    allowed[v, k] = False
            if (u + 1 == L or devices[u + 1] != k) and first_end[k] < 0:  # the first segment on k ends at u
                first_end[k] = u + 1
        if revisited:
            barred = True
            continue
        memory, used, energy = route_usage(devices, macs, activations, output_bytes, speed_macs, rate_bps, compute_w, transmit_w)
        if shared:
            memory += weights_to_host(devices, units, weight_bytes, hosted)
        over = route_overflow(memory, used, energy, memory_left, compute_left, energy_left)
        if over.max() <= FIT_TOLERANCE:
            return _FOUND, dp + 1, cost, devices
        for k in range(N):
            if over[k] > FIT_TOLERANCE:
                memory_try[k] *= 0.5
                compute_try[k] *= 0.5
                energy_try[k] *= 0.5
    return _RAN_OUT, max_dps, np.inf, devices


def segment_starts(devices: np.ndarray) -> np.ndarray:
    """Where a route's segments (maximal runs of units on one device) start."""
    return np.flatnonzero(np.concatenate(([True], devices[1:] != devices[:-1])))


def segment_usage(problem: Problem, cand: Candidate, devices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A route's segments (maximal runs of units on one device): (devices (S,), usage (S, 3)),
    usage being compute (MACs), activation memory (bytes) and compute energy (J) per segment.
    Every request uses these on a device for itself, whatever the others do, which is what
    lets column generation count segments that no other request's can share a device with."""
    devices = np.asarray(devices, int)
    starts = segment_starts(devices)
    energy = cand.macs / problem.speed_macs[devices] * problem.compute_w
    per_unit = np.stack([cand.macs, cand.memory_bytes, energy], axis=1)
    return devices[starts], np.add.reduceat(per_unit, starts, axis=0)


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


@dataclass(frozen=True)
class SearchOrder:
    """Drop sets by their capacity-free per-request objective, best first, with those objectives
    (lower bounds once capacities count) and the capacity-free routes: none changes within a
    time step, so one is computed per step and shared by every search of that step."""

    order: list[int]
    bounds: list[float]
    shortest: list[tuple[float, np.ndarray]]  # (latency_s, devices) per drop set

    @classmethod
    def of(cls, problem: Problem, unconstrained: list | None = None) -> SearchOrder:
        """From :func:`best_unconstrained` (computed here unless the caller has it)."""
        unconstrained = best_unconstrained(problem) if unconstrained is None else unconstrained
        return cls(sorted(range(len(unconstrained)), key=lambda c: unconstrained[c][0]),
                   [u[0] for u in unconstrained], [(u[1], u[2]) for u in unconstrained])
