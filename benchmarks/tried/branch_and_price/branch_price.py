"""Branch-and-price on column generation's master: a lower bound that closes on the plans.

The master LP of :mod:`~adaptive_resnet.planning.colgen` amortises a unit's weights over the
requests a device could serve (``uses <= U h``, h in [0, 1]): a device that runs a unit for one
request pays 1/U of its weights. Branching on the hosting variables removes that: one branch
fixes h[j, i] = 0 (unit j is barred from device i: the segment DP prices no route through it),
the other h[j, i] = 1 (device i holds j's weights whatever it runs). Each node re-runs column
generation from the columns found so far (every column is valid everywhere; a barred pair's
linking row holds its columns at 0) and its Lagrangian bound is valid for the node's plans.

Nodes are taken best-first (the least bound), so the least bound of the open nodes is a valid
lower bound at any time; a node at or above the incumbent plan's objective is closed. A node
whose LP has every h integral has nothing to branch on here: its bound stays in the least.
Where a node's LP is integral (whole n_p and h), its columns are a plan, fitting every
device's rows, returned to the caller to score.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from adaptive_resnet.planning.colgen import ColumnGeneration
from adaptive_resnet.planning.problem import RequestPlan

INTEGRAL = 1e-6  # an LP value this close to an integer counts as that integer


@dataclass
class BranchAndPriceResult:
    bound: float  # the least bound over the open nodes, the unbranchable ones and the incumbent
    nodes: int  # nodes whose column generation ran
    open_nodes: int  # nodes left when the deadline came
    plans: list[list[RequestPlan]] = field(default_factory=list)  # integral node LPs, as plans


def branch_and_price(search: ColumnGeneration, root_bound: float, incumbent: float, deadline: float) -> BranchAndPriceResult:
    """Best-first branching from the converged root of ``search`` (whose bound is
    ``root_bound``), until every node is closed or ``deadline`` (a ``time.perf_counter``
    instant); ``incumbent``: the best plan's objective so far."""
    problem = search.problem
    tie = itertools.count()
    Node = tuple[dict[int, int], dict[int, tuple[float, float]]]
    heap: list[tuple[float, int, Node]] = [(root_bound, next(tie), ({}, {}))]
    stuck: list[float] = []  # bounds of nodes with nothing to branch on
    plans: list[list[RequestPlan]] = []
    nodes = 0
    root = True
    while heap and time.perf_counter() < deadline:
        bound, _, node = heapq.heappop(heap)
        if bound >= incumbent * (1 - 1e-9):
            continue
        fixed, segments = node
        if not root:  # the root's LP is the one column generation left
            search.at_node(fixed, segments)
            result = search.run(deadline)
            nodes += 1
            if not result.converged:
                heapq.heappush(heap, (max(bound, result.bound), next(tie), node))  # the deadline came: it stays open
                break
            bound = max(bound, result.bound)
            if bound >= incumbent * (1 - 1e-9):
                continue
        root = False
        x = search.master.x  # the last LP's solution (columns that came after it: 0)
        counts = np.array([x[k] if k < len(x) else 0.0 for k in search.master.columns])
        children = _branch_segments(search, counts, segments) or _branch_hosting(problem, search.master.hosting_values(x), fixed)
        if not children:
            plan = _integral_plan(search, counts)
            if plan is not None:
                plans.append(plan)
                value = problem.evaluate(plan)
                if value.feasible:
                    incumbent = min(incumbent, value.objective)
                    continue
            stuck.append(bound)
            continue
        for child_fixed, child_segments in children:
            heapq.heappush(heap, (bound, next(tie), ({**fixed, **child_fixed}, {**segments, **child_segments})))
    least = min([b for b, _, _ in heap] + stuck + [incumbent])
    search.at_node({}, {})
    return BranchAndPriceResult(least, nodes, len(heap), plans)


def _branch_segments(search: ColumnGeneration, counts: np.ndarray, segments: dict[int, tuple[float, float]]):
    """Two children on the device whose segment count over all requests the LP leaves most
    fractional: at most its floor, at least its ceiling (every plan has a whole count)."""
    N = len(search.problem.devices)
    total = np.zeros(N)
    for col, n in zip(search.columns, counts, strict=True):
        if n > INTEGRAL:
            total += n * col.segment_count
    frac = np.abs(total - np.round(total))
    i = int(np.argmax(frac))
    if frac[i] <= INTEGRAL:
        return []
    lo, hi = segments.get(i, (-np.inf, np.inf))
    return [({}, {i: (lo, float(np.floor(total[i])))}), ({}, {i: (float(np.ceil(total[i])), hi)})]


def _branch_hosting(problem, hosting: dict[int, float], fixed: dict[int, int]):
    """Two children on a fractional hosting variable (:func:`_branching_pair`): h = 1, h = 0."""
    q = _branching_pair(problem, hosting, fixed)
    return [] if q is None else [({q: 1}, {}), ({q: 0}, {})]


def _branching_pair(problem, hosting: dict[int, float], fixed: dict[int, int]) -> int | None:
    """The fractional hosting variable to branch on: the one whose weights, as a share of its
    device's memory, the LP leaves most undecided (min(h, 1 - h) times that share)."""
    N = len(problem.devices)
    best, pick = INTEGRAL, None
    for q, h in hosting.items():
        if q in fixed or min(h, 1 - h) <= INTEGRAL:
            continue
        j, i = divmod(q, N)
        score = min(h, 1 - h) * problem.weight_bytes[j] / problem.memory_limit_bytes[i]
        if score > best:
            best, pick = score, q
    return pick


def _integral_plan(search: ColumnGeneration, counts: np.ndarray) -> list[RequestPlan] | None:
    """The node LP's columns as a plan when every n_p is whole and they serve every request."""
    whole = np.round(counts)
    if np.abs(counts - whole).max(initial=0.0) > INTEGRAL or int(whole.sum()) != search.problem.requests:
        return None
    return [RequestPlan(col.candidate, col.devices.copy()) for col, k in zip(search.columns, whole.astype(int), strict=True)
            for _ in range(k)]
