"""``fast``: an online heuristic for one time step, in milliseconds.

Requests are placed one after another. Each tries the drop sets in order of their unconstrained
per-request objective (best first) and takes the first with a route that fits the devices'
remaining memory, compute and energy: first the plain shortest route, then the best route of
contiguous per-device segments that fit (:func:`~adaptive_resnet.planning.routing.capacity_route`).
What a request takes is subtracted before the next one is placed. A second pass is led by a
leaner drop set (:func:`primaries`): led by the best one, the first requests fill the best
devices and the last get the slow ones. Both run within a fixed budget of segment DPs (work,
not time, so the plan is the same on every machine). When requests are left that fit nowhere,
:func:`repair_tail` places the last ones again, most frugal drop sets first, within a budget
of its own. :func:`improve`, a local search that re-places one request at a time, is left to
the ``exact`` solver, which has time.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from adaptive_resnet.planning.problem import Problem, RequestPlan
from adaptive_resnet.planning.residual import Residual
from adaptive_resnet.planning.routing import (
    BudgetSpent,
    RouteBudget,
    SearchOrder,
    capacity_route,
)
from adaptive_resnet.planning.solution import Solution

LEAD_CHOICES, GREEDY_PASSES = 3, 2  # drop sets that may lead a greedy pass (primaries), and passes run
FAST_ROUTE_BUDGET = 125  # segment DPs per fast solve, all passes (~0.1 ms each with what goes around them, on the 2-core dev machine); 75 cut the second pass of N30-R30 planted short (+3.0% over exact; +0.45% with it)
REPAIR_ROUTE_BUDGET = 20  # segment DPs to repair a plan with requests that fit nowhere (10 were too few on N10-R30-tight)


def route_within(problem: Problem, residual: Residual, c: int, shortest: tuple[float, np.ndarray],
                 budget: RouteBudget | None = None) -> tuple[float, np.ndarray] | None:
    """The best route for drop set ``c`` that fits ``residual`` (as far as the heuristic finds),
    given ``shortest``, its capacity-free route, which is taken when it fits."""
    cand = problem.candidates[c]
    latency, devices = shortest
    if np.isfinite(latency) and residual.fits(c, devices):
        return latency, devices
    if not residual.could_fit(cand):
        return None
    return capacity_route(problem, cand, residual.memory, residual.compute, residual.energy, residual.hosted, budget=budget)


def place_request(problem: Problem, residual: Residual, search: SearchOrder, extra_tries: int = 2,
                  budget: RouteBudget | None = None) -> tuple[int, np.ndarray] | None:
    """The drop set and route with the lowest objective that fit ``residual``, or None.

    Drop sets are tried in order of their capacity-free bound; the search stops once that bound
    reaches the best objective found, or ``extra_tries`` drop sets after the first that fits.
    """
    best: tuple[float, int, np.ndarray] | None = None
    tries_left = extra_tries
    for c in search.order:
        if best is not None and (search.bounds[c] >= best[0] or tries_left == 0):
            break
        if best is not None:
            tries_left -= 1
        found = route_within(problem, residual, c, search.shortest[c], budget)
        if found is not None:
            objective = problem.objective(found[0], problem.candidates[c].accuracy)
            if best is None or objective < best[0]:
                best = (objective, c, found[1])
    return None if best is None else (best[1], best[2])


def place_next(problem: Problem, residual: Residual, previous: tuple[int, np.ndarray] | None, search: SearchOrder,
               extra_tries: int, budget: RouteBudget | None) -> tuple[int, np.ndarray] | None:
    """The next request's drop set and route. Requests are alike: the previous request's choice
    is kept while it still fits, which saves a search per request (the search runs again when
    it no longer fits)."""
    if previous is not None and residual.fits(*previous):
        return previous
    return place_request(problem, residual, search, extra_tries, budget)


def improve(problem: Problem, requests: list[RequestPlan], passes: int = 2, time_budget_s: float = float("inf"),
            search: SearchOrder | None = None) -> list[RequestPlan]:
    """Local search: take each request out, re-place it against the others, keep improvements."""
    deadline = time.perf_counter() + time_budget_s
    search = search or SearchOrder.of(problem)
    current = problem.evaluate(requests)
    for _ in range(passes):
        changed = False
        for r in range(len(requests)):
            if time.perf_counter() > deadline:
                return requests
            residual = Residual(problem)
            for other, req in enumerate(requests):
                if other != r:
                    residual.take(req.candidate, req.devices)
            placed = place_request(problem, residual, search, extra_tries=len(search.order))
            if placed is None:
                continue
            trial = requests[:r] + [RequestPlan(*placed)] + requests[r + 1 :]
            ev = problem.evaluate(trial)
            if ev.feasible and (not current.feasible or ev.objective < current.objective - 1e-12):
                requests, current, changed = trial, ev, True
        if not changed:
            break
    return requests


def greedy(problem: Problem, search: SearchOrder, extra_tries: int, budget: RouteBudget | None = None,
           beat: float = np.inf, admit: bool = False) -> tuple[list[RequestPlan], int] | None:
    """Requests placed one after another against what the earlier ones left: (plan, how many
    fit nowhere and got the unconstrained best instead), or None once ``budget`` is spent.
    With ``admit``, the pass stops at the first request that fits nowhere: (the requests that
    fit, how many are left out). Requests are alike, so the next one would fit nowhere either.

    With a finite ``beat`` (the objective of a feasible plan in hand) the pass gives up, with
    None, as soon as it cannot end below it: a request fits nowhere, or the requests placed so
    far plus the best the others could do reach it."""
    try:
        return _greedy(problem, search, extra_tries, budget, beat, admit)
    except BudgetSpent:
        return None


def _greedy(problem: Problem, search: SearchOrder, extra_tries: int, budget: RouteBudget | None,
            beat: float = np.inf, admit: bool = False) -> tuple[list[RequestPlan], int] | None:
    residual = Residual(problem)
    requests, unplaced = [], 0
    previous = None
    R, floor, total = problem.requests, min(search.bounds), 0.0
    for k in range(R):
        placed = previous = place_next(problem, residual, previous, search, extra_tries, budget)
        if placed is None:
            if np.isfinite(beat):
                return None
            if admit:
                return requests, R - k
            # Nothing fits: serve it the unconstrained best and let evaluation name the violation.
            unplaced += 1
            placed = (search.order[0], search.shortest[search.order[0]][1])
        elif np.isfinite(beat):
            cand = problem.candidates[placed[0]]
            total += problem.objective(problem.latency_s(cand, placed[1]), cand.accuracy)
            if (total + (R - k - 1) * floor) / R >= beat:
                return None
        residual.take(*placed)
        requests.append(RequestPlan(*placed))
    return requests, unplaced


def repair_tail(problem: Problem, requests: list[RequestPlan], unplaced: int, search: SearchOrder,
                budget: RouteBudget) -> list[RequestPlan] | None:
    """A plan in which every request fits, made from ``requests`` (whose last ``unplaced`` fit
    nowhere), or None. The greedy pass gives early requests the best drop set and leaves the
    last ones memory too scattered to hold any: here the last t placed requests (t = 2, 4, 8,
    ...) are taken out and they and the unplaced ones are placed again, smallest memory
    footprint (weights and activations) first, each taking the first drop set that fits."""
    p = problem
    frugal = SearchOrder(sorted(search.order, key=lambda c: (needs(p, c)[1], search.bounds[c])), search.bounds, search.shortest)
    placed = requests[: len(requests) - unplaced]
    t = 2
    try:
        while True:
            t = min(t, len(placed))
            residual = Residual(p)
            for req in placed[: len(placed) - t]:
                residual.take(req.candidate, req.devices)
            tail, found = [], None
            for _ in range(t + unplaced):
                found = place_next(p, residual, found, frugal, 0, budget)
                if found is None:
                    break
                residual.take(*found)
                tail.append(RequestPlan(*found))
            if len(tail) == t + unplaced:
                return placed[: len(placed) - t] + tail
            if t == len(placed):
                return None
            t *= 2
    except BudgetSpent:
        return None


def needs(problem: Problem, c: int) -> tuple[float, float]:
    """(compute, memory) one request of drop set ``c`` needs: MACs, and bytes of weights and activations."""
    cand = problem.candidates[c]
    return float(cand.macs.sum()), float((problem.weight_bytes[cand.units].sum() if problem.shared_weights else 0.0) + cand.memory_bytes.sum())


def primaries(problem: Problem, search: SearchOrder, count: int) -> list[int]:
    """Up to ``count`` drop sets to lead a greedy pass with: in order of their capacity-free
    objective, each needing less compute or less memory (weights and activations) than every
    one before it. A drop set worse on all three is never a better first choice."""
    kept: list[tuple[float, float]] = []
    out = []
    for c in search.order:
        need = needs(problem, c)
        if not np.isfinite(search.bounds[c]) or any(m <= need[0] and f <= need[1] for m, f in kept):
            continue
        kept.append(need)
        out.append(c)
        if len(out) == count:
            break
    return out


def solve_fast(problem: Problem, extra_tries: int = 0, search: SearchOrder | None = None,
               route_budget: int = FAST_ROUTE_BUDGET, admit: bool = False, time_limit_s: float | None = None,
               grow: bool = True) -> Solution:
    """Two greedy passes, each led by a drop set of :func:`primaries`: the first by the best one,
    the second by the next one or, if the first left requests out, by the leanest in the
    resource that ran short; the best plan is kept. The second runs while what is left of
    ``route_budget`` segment DPs allows (the first pass's count against it too) and gives up
    once it cannot beat the first. A budget of work, not of time, so that the plan is the
    same on every machine.

    Why several leads: the best drop set alone fills the best devices and leaves the last
    requests the slow ones (N10-R10-tight: 0.5864 led by the best, 0.5659 led by a drop set
    with 6% less compute, 0.5523 from ``exact``).

    ``admit``: when not every request fits, serve as many as fit (most served first, then the
    objective) rather than a plan that violates a capacity; :attr:`Solution.unserved_reason`
    names the binding resource (``grow=False``: one greedy pass's count, without the passes
    that try to serve more; the pools' first pass over a fleet uses it). On a fleet of more than
    ``POOLED_ABOVE`` devices the plan is made pool by pool
    (:mod:`~adaptive_resnet.planning.pools`), within ``time_limit_s`` if given.
    """
    from adaptive_resnet.planning import pools

    if len(problem.devices) > pools.POOLED_ABOVE:
        return pools.solve_pooled(problem, "fast", admit=admit, time_limit_s=time_limit_s)
    t0 = time.perf_counter()
    search = search or SearchOrder.of(problem)
    R = problem.requests
    best = None  # (requests, unplaced, evaluation)

    def rank(run, evaluation):
        served = len(run[0]) if admit else R
        return (served, evaluation.feasible, -evaluation.objective)

    spent = 0
    leads = primaries(problem, search, LEAD_CHOICES)
    for k in range(min(len(leads), GREEDY_PASSES)):
        if k > 0 and spent >= route_budget:
            break
        if k == 1 and (best[1] or not best[2].feasible):
            # The first pass left requests out: the leanest in the short resource leads next.
            short = 1 if any(v.startswith("memory") for v in _violations_of(problem, best, search)) else 0
            leads[1:] = sorted(leads[1:], key=lambda c: needs(problem, c)[short])
        lead = leads[k]
        order = SearchOrder([lead] + [c for c in search.order if c != lead], search.bounds, search.shortest)
        allowance = sys.maxsize if k == 0 else route_budget - spent  # the first pass always completes
        counter = RouteBudget(allowance)
        full = best is not None and best[2].feasible and not best[1]
        beat = best[2].objective if full else np.inf
        run = greedy(problem, order, extra_tries, counter, beat, admit)
        spent += allowance - counter.left
        if run is None:
            continue  # out of budget (the loop ends below) or no better than the plan in hand
        evaluation = problem.evaluate(run[0], requests=len(run[0]) if admit else None)
        if best is None or rank(run, evaluation) > rank(best[:2], best[2]):
            best = (*run, evaluation)
        if best[2].feasible and not best[1] and best[2].objective <= min(search.bounds) * (1 + 1e-12):
            break  # every request got the capacity-free best: nothing can beat it
    requests, unplaced, evaluation = best
    if admit and unplaced and grow:
        # Serving the most: a pass that gives each request the drop set leanest in the resource
        # that binds, first that fits (led by the best drop set, a pass fills memory with the
        # full network's weights: 2 of 5 admitted where 5 fit, on a two-device case).
        short = 1 if any(v.startswith("memory") for v in _violations_of(problem, best, search)) else 0
        lean = SearchOrder(sorted(search.order, key=lambda c: (needs(problem, c)[short], search.bounds[c])), search.bounds, search.shortest)
        run = greedy(problem, lean, 0, RouteBudget(REPAIR_ROUTE_BUDGET * max(R, 1)), np.inf, admit)
        if run is not None and len(run[0]) > len(requests):
            requests, unplaced = run
            evaluation = problem.evaluate(requests, requests=len(requests))
        # Then one more at a time, re-placing the last ones with it (repair_tail), while it fits:
        # earlier choices can leave each device a remainder too small for a unit (2 of 3 here).
        dummy = RequestPlan(search.order[0], search.shortest[search.order[0]][1])
        while unplaced:
            grown = repair_tail(problem, [*requests, dummy], 1, search, RouteBudget(REPAIR_ROUTE_BUDGET))
            if grown is None or not (ev := problem.evaluate(grown, requests=len(grown))).feasible:
                break
            requests, evaluation, unplaced = grown, ev, unplaced - 1
    if unplaced and (grow or not admit):
        tail = requests if not admit else requests + [RequestPlan(search.order[0], search.shortest[search.order[0]][1])] * unplaced
        repaired = repair_tail(problem, tail, unplaced, search, RouteBudget(REPAIR_ROUTE_BUDGET))
        if repaired is not None and (ev := problem.evaluate(repaired)).feasible:
            requests, evaluation, unplaced = repaired, ev, 0
    lower = min(search.bounds)
    reason = unserved_reason(problem, requests, search) if admit and unplaced else ""
    note = (f"admitted {len(requests)} of {R}: {reason}" if admit else f"{unplaced} request(s) fit no device set") if unplaced else ""
    return Solution("fast", requests, evaluation, time.perf_counter() - t0, lower_bound=lower, note=note, unserved_reason=reason)


def _violations_of(problem: Problem, best, search: SearchOrder) -> list[str]:
    """What the plan in hand violates, or, for an admitted plan, what one more request would."""
    requests, unplaced, evaluation = best
    if not unplaced or len(requests) == problem.requests:  # not admitting: the plan names them itself
        return evaluation.violations
    return unserved_reason(problem, requests, search).split("; ")


def unserved_reason(problem: Problem, requests: list[RequestPlan], search: SearchOrder) -> str:
    """Why one more request does not fit beside ``requests``: the capacities its capacity-free
    best route would break (the binding resource), or the accuracy threshold."""
    extra = RequestPlan(search.order[0], search.shortest[search.order[0]][1])
    violations = [v for v in problem.evaluate([*requests, extra], requests=len(requests) + 1).violations
                  if not v.startswith("requests:")]
    return "; ".join(violations[:2]) or "no route fits what the devices have left"
