"""``exact``: optimal plans where provable, with a valid lower bound and the gap otherwise.

1. Capacities ignored, requests are independent and each one's best plan is a shortest route
   (:mod:`~adaptive_resnet.planning.routing`) for its best drop set. If that plan, repeated for
   every request, fits every device, it is optimal: done in milliseconds.
2. Otherwise a mixed-integer program, solved by HiGHS (through ``scipy.optimize.milp``). The
   requests of a time step are interchangeable, so instead of one path per request it carries,
   for each drop set d, an integer flow of n_d requests through the layered graph of d's running
   units (node = unit on device, edge = transfer). Integer flows decompose into n_d paths, so the
   program is exact, and its size does not grow with R. Capacities (Eq. 13, 14, 17) are linear
   in the flows; in ``shared-weights`` mode a binary h[j, i] marks that device i hosts unit j.
   Drop sets that cannot appear in an optimal plan (their own lower bound already exceeds the
   heuristic's objective) are left out.

Before the program, cheap steps often settle it: a per-request bound that respects each
device's capacities (:func:`~adaptive_resnet.planning.routing.single_request_bound`), the
``fast`` plan improved by local search, and column generation
(:mod:`~adaptive_resnet.planning.colgen`), whose master LP gives a stronger bound and whose
columns, solved as a small integer program, give another plan; when plan and bound meet, the
plan is optimal. The flow program runs with what is left of the time limit when it is small
enough to build in time. The answer is the best plan found; the lower bound is the largest
valid bound (capacity-free, per-request, column generation, and the program's dual bound).
"""

from __future__ import annotations

import time

import numpy as np

from adaptive_resnet.planning.colgen import column_generation, restricted_master_plans
from adaptive_resnet.planning.fast import improve, place_request, solve_fast
from adaptive_resnet.planning.problem import Problem, RequestPlan
from adaptive_resnet.planning.residual import Residual
from adaptive_resnet.planning.routing import SearchOrder, best_unconstrained, single_request_bound
from adaptive_resnet.planning.solution import Solution

MASTER_ALL_COLUMNS = 200  # the integer master takes every column up to this many, else those the last LP used
MASTER_STARTS = 12  # plans of the integer master's search that local search starts from
WHOLE_FLEET_UP_TO = 300  # devices: above POOLED_ABOVE, the whole fleet's search runs after the pooled plan up to this


def solve_exact(problem: Problem, time_limit_s: float = 1.0, admit: bool = False) -> Solution:
    """The best plan found within ``time_limit_s`` and its lower bound (see the module).

    ``admit``: when not every request fits, start from the count ``fast`` admits and solve
    exactly for one more while one fits (:func:`_admit_exactly`), within the time limit. Fleets of more than ``POOLED_ABOVE`` devices
    are planned pool by pool (:mod:`~adaptive_resnet.planning.pools`), then, up to
    ``WHOLE_FLEET_UP_TO`` devices, searched whole with the time left (:func:`_pooled_then_whole`)."""
    from adaptive_resnet.planning import pools

    if len(problem.devices) > pools.POOLED_ABOVE:
        return _pooled_then_whole(problem, time_limit_s, admit)
    if admit:
        t0 = time.perf_counter()
        admitted = solve_fast(problem, admit=True)
        if admitted.served < problem.requests:
            return _admit_exactly(problem, admitted, t0, time_limit_s)
    if not problem.shared_weights:
        return _seeded_by_shared_weights(problem, time_limit_s)
    return _solve_exact(problem, time_limit_s)


def _pooled_then_whole(problem: Problem, time_limit_s: float, admit: bool) -> Solution:
    """A fleet above ``POOLED_ABOVE`` devices: the pooled plan first (tens of milliseconds);
    then, up to ``WHOLE_FLEET_UP_TO`` devices and when every request is served, the search on
    the whole fleet with the time left, whose column generation proves a bound the pools cannot
    (their bound is the compute-only one) and whose plans may cross pools. Measured on planted
    instances with 10 s: N = 100, R = 100 from a 46% gap (pooled) to 4.4%, and plans 2-7% lower
    at N = 100-300. Past 300 devices the route DPs' tables (L x N^2 per drop set) outgrow the
    time and memory, and the pooled plan is the answer."""
    from adaptive_resnet.planning import pools

    t0 = time.perf_counter()
    sol = pools.solve_pooled(problem, "exact", admit=admit, time_limit_s=time_limit_s)
    left = time_limit_s - (time.perf_counter() - t0)
    if len(problem.devices) > WHOLE_FLEET_UP_TO or sol.served < problem.requests or not sol.feasible \
            or left < 3 * _whole_fleet_setup_s(problem, sol.solve_time_s):
        sol.note += (f"; the pooled plan (the search over the whole fleet runs up to {WHOLE_FLEET_UP_TO} devices, "
                     f"all requests served, with the time for it)")
        return sol
    whole = _solve_exact(problem, left)
    bounds = [b for b in (sol.lower_bound, whole.lower_bound) if b is not None]
    if whole.feasible and whole.evaluation.objective < sol.evaluation.objective - 1e-12:
        best, note = whole, f"the whole fleet's plan ({whole.note}); pooled plan {sol.evaluation.objective:.4f}"
    else:
        best, note = sol, f"the pooled plan; the whole fleet's search: {whole.note}"
    best.lower_bound = max(bounds) if bounds else None
    best.solve_time_s = time.perf_counter() - t0
    best.note = note
    return best


def _whole_fleet_setup_s(problem: Problem, pooled_s: float) -> float:
    """What the whole fleet's search spends before column generation can use its budget (its
    bounds' segment DPs, O(D L^2 N^2), and two pooled heuristic plans), estimated; it is
    not bounded by the time limit, so the search runs only where the time left is three times
    this. Calibrated here: ~1.2 s at N = 300, 0.13 s at N = 100 for the DPs (2 ns per step);
    without the check, 1 s limits were overrun by up to 2.4x at N = 300."""
    steps = sum(len(c.units) ** 2 for c in problem.candidates) * len(problem.devices) ** 2
    return 2e-9 * steps + 2 * pooled_s


def _seeded_by_shared_weights(problem: Problem, time_limit_s: float) -> Solution:
    """Paper memory mode (Eq. 13 per request) with the plan of its shared-weights twin as a
    candidate: that plan is often feasible in paper mode too, and the paper-mode search alone
    has missed it (0.7446 returned where the twin's plan scored 0.7106). The twin gets 30% of
    the time limit; the bound is the paper-mode search's."""
    t0 = time.perf_counter()
    twin = problem.subset(np.arange(len(problem.devices)), problem.requests)
    twin.shared_weights = True
    seed = _solve_exact(twin, 0.3 * time_limit_s)
    sol = _solve_exact(problem, max(time_limit_s - (time.perf_counter() - t0), 0.01))
    ev = problem.evaluate(seed.requests)
    if ev.feasible and (not sol.feasible or ev.objective < sol.evaluation.objective - 1e-12):
        sol.requests, sol.evaluation = seed.requests, ev
        sol.note = sol.note.replace("optimal (", "(") + "; plan from the shared-weights twin"
        if sol.lower_bound is not None and ev.objective <= sol.lower_bound * (1 + 1e-9):
            sol.note = "optimal (" + sol.note + ")"
    sol.solve_time_s = time.perf_counter() - t0
    return sol


def _admit_exactly(problem: Problem, admitted: Solution, t0: float, time_limit_s: float) -> Solution:
    """From ``fast``'s admission of k requests: the exact plan for one more while one is found
    (fast may admit fewer than fit), then for the most found, the better of it and fast's.
    Each try gets half of what is left of the time limit."""
    everyone = np.arange(len(problem.devices))
    best, served = admitted, admitted.served
    while served < problem.requests and time.perf_counter() - t0 < time_limit_s:
        more = _solve_exact(problem.subset(everyone, served + 1), max(0.5 * (time_limit_s - (time.perf_counter() - t0)), 0.01))
        if not more.feasible:
            break
        best, served = more, served + 1
    if best is admitted and served:
        part = _solve_exact(problem.subset(everyone, served), max(time_limit_s - (time.perf_counter() - t0), 0.01))
        if part.feasible and part.evaluation.objective <= admitted.evaluation.objective:
            best = part
    best.solver = "exact"
    best.unserved_reason = admitted.unserved_reason if served < problem.requests else ""
    best.solve_time_s = time.perf_counter() - t0
    if served < problem.requests:
        best.note = f"admitted {served} of {problem.requests}: {best.unserved_reason}; {best.note}"
    return best


def _solve_exact(problem: Problem, time_limit_s: float) -> Solution:
    t0 = time.perf_counter()
    unconstrained = best_unconstrained(problem)
    best_c = int(np.argmin([u[0] for u in unconstrained]))
    lower = unconstrained[best_c][0]
    requests = [RequestPlan(best_c, unconstrained[best_c][2]) for _ in range(problem.requests)]
    evaluation = problem.evaluate(requests)
    if evaluation.feasible:
        return Solution("exact", requests, evaluation, time.perf_counter() - t0, lower_bound=lower,
                        note="optimal: capacities do not bind (dynamic programming)")
    lower = max(lower, single_request_bound(problem))
    search = SearchOrder.of(problem, unconstrained)  # shared by every search below
    # Two starts, both of whose routes seed column generation: fast's own plan and a greedy
    # pass that weighs every drop set per request.
    starts = [solve_fast(problem, search=search), solve_fast(problem, extra_tries=len(problem.candidates), search=search, route_budget=0)]
    heuristic = min(starts, key=lambda sol: (not sol.feasible, sol.evaluation.objective))
    best_requests = improve(problem, heuristic.requests, time_budget_s=0.05 * time_limit_s, search=search)
    best_eval = problem.evaluate(best_requests)
    note = "fast heuristic + local search"
    if best_eval.feasible and best_eval.objective <= lower * (1 + 1e-9):
        return Solution("exact", best_requests, best_eval, time.perf_counter() - t0, lower_bound=lower,
                        note="optimal: heuristic plan meets the per-request bound")
    # Column generation: the master LP's bound (weights amortised over the requests a device
    # can serve), then the best plan from the columns it found, improved by local search.
    floors = np.array([u[0] for u in unconstrained])
    seed = [(req.candidate, req.devices) for req in best_requests + [r for sol in starts for r in sol.requests]]
    seed += [(c, unconstrained[c][2]) for c in np.argsort(floors)[:5] if np.isfinite(floors[c])]
    # Column generation gets the time up to 0.65 of the limit: its bound is what the gap rests
    # on (the flow program below fits the time limit only on small instances).
    budget = max(0.65 * time_limit_s - (time.perf_counter() - t0), 0.0)
    cg = column_generation(problem, seed, budget, floors)
    if np.isinf(cg.bound) and cg.bound > 0:
        return Solution("exact", best_requests, best_eval, time.perf_counter() - t0, lower_bound=None,
                        note="infeasible: not even one request fits the devices; " + _binding(problem))
    lower = max(lower, cg.bound)
    note += f"; column generation: {cg.rounds} rounds, {len(cg.columns)} columns"

    def consider(name: str, plan: list[RequestPlan] | None, until: float) -> None:
        nonlocal best_requests, best_eval, note
        if plan is None or len(plan) != problem.requests:
            return
        plan = improve(problem, plan, time_budget_s=max(0.0, until * time_limit_s - (time.perf_counter() - t0)), search=search)
        ev = problem.evaluate(plan)
        if ev.feasible and (not best_eval.feasible or ev.objective < best_eval.objective - 1e-12):
            best_requests, best_eval = plan, ev
            note += "" if note.endswith(f"plan from the {name}") else f"; plan from the {name}"

    # Plans from the columns, each improved by local search: the LP rounded down and
    # completed by the heuristic (cheap), then those of the integer master over the columns (past
    # MASTER_ALL_COLUMNS, those the last LP used and the seed's: over all 700 of N30-R30-tight
    # HiGHS found no plan in 0.3 s), up to 0.85 of the time limit.
    consider("rounded LP", round_lp(problem, cg, search), 0.75)
    used = cg.columns if len(cg.columns) <= MASTER_ALL_COLUMNS else \
        [col for k, col in enumerate(cg.columns) if k < len(seed) or (cg.lp_counts is not None and cg.lp_counts[k] > 1e-9)]
    plans = restricted_master_plans(problem, used, max(0.85 * time_limit_s - (time.perf_counter() - t0), 0.01), keep=MASTER_STARTS)
    for plan in reversed(plans):  # its best first, then the plans it improved through, while time is left
        if time.perf_counter() - t0 > 0.95 * time_limit_s:
            break
        consider("restricted master", plan, 0.95)
    if best_eval.feasible and best_eval.objective <= lower * (1 + 1e-9):
        return Solution("exact", best_requests, best_eval, time.perf_counter() - t0, lower_bound=lower, note="optimal (" + note + ")")
    incumbent = best_eval.objective if best_eval.feasible else np.inf
    remaining = time_limit_s - (time.perf_counter() - t0)
    # Building the program costs about 10 us a variable here, and HiGHS overruns its time limit
    # by up to ~25 us a variable before it first checks it (measured on the paper's scenario,
    # 33,000 variables: 0.86-1.55 s for 0.75 s given); skip it when that would overrun what is left.
    size = sum(len(c.units) * len(problem.devices) ** 2 for c in problem.candidates)
    if remaining > 0.05 and size * 3e-5 < 0.5 * remaining:
        milp = _solve_milp(problem, unconstrained, incumbent, t0 + 0.97 * time_limit_s)
        if milp["requests"] is not None:
            ev = problem.evaluate(milp["requests"])
            if ev.feasible and (not best_eval.feasible or ev.objective < best_eval.objective - 1e-12):
                best_requests, best_eval, note = milp["requests"], ev, "MILP incumbent"
        if milp["bound"] is not None:
            lower = max(lower, milp["bound"])
        note += f"; MILP: {milp['status']}"
        if milp["infeasible"]:
            return Solution("exact", best_requests, best_eval, time.perf_counter() - t0, lower_bound=None,
                            note="infeasible (proved by the MILP): " + _binding(problem))
    else:
        note += f"; MILP skipped ({size} flow variables, {max(remaining, 0.0):.2f} s left)"
    if best_eval.feasible and best_eval.objective <= lower * (1 + 1e-9):
        note = "optimal (" + note + ")"
    elif not best_eval.feasible:
        note = "no feasible plan found (infeasibility not proven); " + _binding(problem)
    return Solution("exact", best_requests, best_eval, time.perf_counter() - t0, lower_bound=lower, note=note)


def round_lp(problem: Problem, cg, search: SearchOrder) -> list[RequestPlan] | None:
    """The LP's columns, each taken as many whole times as the LP uses it and the devices
    allow, largest counts first; the remaining requests placed by the ``fast`` heuristic."""
    if cg.lp_counts is None:
        return None
    residual = Residual(problem)
    plan: list[RequestPlan] = []
    for p in np.argsort(-cg.lp_counts):
        col = cg.columns[p]
        for _ in range(int(np.floor(cg.lp_counts[p] + 1e-6))):
            if len(plan) < problem.requests and residual.fits(col.candidate, col.devices):
                residual.take(col.candidate, col.devices)
                plan.append(RequestPlan(col.candidate, col.devices.copy()))
    while len(plan) < problem.requests:
        placed = place_request(problem, residual, search)
        if placed is None:
            return None
        residual.take(*placed)
        plan.append(RequestPlan(*placed))
    return plan


def _binding(problem: Problem) -> str:
    """A name for the constraint that makes a time step infeasible, as far as a quick check sees."""
    smallest = min(problem.candidates, key=lambda c: c.macs.sum())
    need_macs = smallest.macs.sum() * problem.requests
    avail = problem.available
    if need_macs > problem.compute_limit_macs[avail].sum():
        return f"compute: {problem.requests} requests need >= {need_macs / 1e9:.2f} GMAC, devices offer {problem.compute_limit_macs[avail].sum() / 1e9:.2f}"
    need_mem = smallest.memory_bytes.sum() * problem.requests + (problem.weight_bytes[smallest.units].sum() if problem.shared_weights else 0)
    if need_mem > problem.memory_limit_bytes[avail].sum():
        return f"memory: the smallest allowed model needs {need_mem / 1e6:.1f} MB, devices offer {problem.memory_limit_bytes[avail].sum() / 1e6:.1f} MB"
    need_j = min(smallest.macs.sum() / problem.speed_macs[avail].max() * problem.compute_w * problem.requests, np.inf)
    if need_j > problem.energy_limit_j[avail].sum():
        return f"energy: {problem.requests} requests need >= {need_j:.1f} J, devices hold {problem.energy_limit_j[avail].sum():.1f} J"
    return "no single resource is short in total: the binding constraints are how memory, compute and energy are spread over the devices"


def _solve_milp(problem: Problem, unconstrained, incumbent: float, deadline: float) -> dict:
    """The joint MILP, solved until ``deadline`` (a ``time.perf_counter`` instant): its time
    limit is what is left once the program is built, so that building counts against it."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    R, N = problem.requests, len(problem.devices)
    scale = problem.alpha / (R * problem.reference_latency_s)
    lb0 = min(u[0] for u in unconstrained)
    keep = [c for c, u in enumerate(unconstrained) if ((R - 1) * lb0 + u[0]) / R <= incumbent + 1e-12 and np.isfinite(u[0])]

    cost: list[np.ndarray] = []
    integral: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    rows, cols, vals = [], [], []
    eq_rhs: list[float] = []
    n_var = 0

    def new_vars(count: int, c: np.ndarray, integer: bool, ub: np.ndarray | float) -> np.ndarray:
        nonlocal n_var
        idx = np.arange(n_var, n_var + count)
        n_var += count
        cost.append(np.broadcast_to(c, (count,)).astype(float))
        integral.append(np.full(count, int(integer)))
        upper.append(np.broadcast_to(np.asarray(ub, float), (count,)).copy())
        return idx

    def add_eq(index_lists: list[np.ndarray], coef_lists: list[np.ndarray], rhs: float) -> None:
        r = len(eq_rhs)
        for idx, coef in zip(index_lists, coef_lists, strict=True):
            rows.extend([r] * len(idx))
            cols.extend(idx.tolist())
            vals.extend(np.broadcast_to(coef, idx.shape).tolist())
        eq_rhs.append(rhs)

    # Inequality rows per device: memory, compute, energy (coefficients gathered, then stacked).
    ineq = {k: ([], []) for k in ("memory", "compute", "energy")}
    hosting_rows: list[tuple[int, int, int]] = []  # (u var, unit, device)
    dev_ub = np.where(problem.available, R, 0.0)
    n_vars, u_vars, f_vars = {}, {}, {}
    for c in keep:
        cand = problem.candidates[c]
        L = len(cand.units)
        n_vars[c] = new_vars(1, np.array([problem.beta * (1 - cand.accuracy) / R]), True, R)
        comp_t = problem.compute_s(cand)  # (L, N)
        u = new_vars(L * N, (comp_t * scale).ravel(), False, np.tile(dev_ub, L)).reshape(L, N)
        tr = problem.transfer_s(cand)[:-1].copy()  # (L-1, N, N)
        tr[:, np.arange(N), np.arange(N)] = 0.0
        f = new_vars((L - 1) * N * N, (tr * scale).ravel(), True, R).reshape(L - 1, N, N)
        u_vars[c], f_vars[c] = u, f
        add_eq([u[0], n_vars[c]], [np.ones(N), np.array([-1.0])], 0.0)
        for layer in range(L - 1):
            for i in range(N):
                add_eq([f[layer, i, :], u[layer, i : i + 1]], [np.ones(N), np.array([-1.0])], 0.0)
                add_eq([f[layer, :, i], u[layer + 1, i : i + 1]], [np.ones(N), np.array([-1.0])], 0.0)
        for i in range(N):
            ineq["compute"][0].append((i, u[:, i], cand.macs))
            ineq["memory"][0].append((i, u[:, i], cand.memory_bytes))
            ineq["energy"][0].append((i, u[:, i], comp_t[:, i] * problem.compute_w))
            ineq["energy"][0].append((i, f[:, i, :].ravel(), (tr[:, i, :] * problem.transmit_w).ravel()))
            for layer in range(L):
                hosting_rows.append((int(u[layer, i]), int(cand.units[layer]), i))
    add_eq([np.array([n_vars[c][0] for c in keep])], [np.ones(len(keep))], float(R))

    h = None
    if problem.shared_weights:
        units_used = sorted({unit for _, unit, _ in hosting_rows})
        h_index = {}
        for unit in units_used:
            idx = new_vars(N, np.zeros(N), True, problem.available.astype(float))
            for i in range(N):
                h_index[(unit, i)] = idx[i]
                ineq["memory"][0].append((i, np.array([idx[i]]), np.array([problem.weight_bytes[unit]])))
        h = h_index

    n_eq = len(eq_rhs)
    ub_rhs: list[float] = []
    for kind, limit in (("memory", problem.memory_limit_bytes), ("compute", problem.compute_limit_macs), ("energy", problem.energy_limit_j)):
        for i in range(N):
            r = n_eq + len(ub_rhs)
            for dev, idx, coef in ineq[kind][0]:
                if dev == i:
                    rows.extend([r] * len(idx))
                    cols.extend(np.asarray(idx).tolist())
                    vals.extend(np.asarray(coef, float).tolist())
            ub_rhs.append(float(limit[i]))
    if h is not None:
        for u_var, unit, i in hosting_rows:  # u <= R * h
            r = n_eq + len(ub_rhs)
            rows.extend([r, r])
            cols.extend([u_var, int(h[(unit, i)])])
            vals.extend([1.0, -float(R)])
            ub_rhs.append(0.0)

    A = coo_matrix((vals, (rows, cols)), shape=(n_eq + len(ub_rhs), n_var)).tocsr()
    lo = np.concatenate([np.array(eq_rhs), np.full(len(ub_rhs), -np.inf)])
    hi = np.concatenate([np.array(eq_rhs), np.array(ub_rhs)])
    left_s = deadline - time.perf_counter()
    if left_s < 0.01:
        return {"requests": None, "bound": None, "status": "no time left once built", "proven": False, "infeasible": False}
    res = milp(
        c=np.concatenate(cost), integrality=np.concatenate(integral), bounds=Bounds(0, np.concatenate(upper)),
        constraints=LinearConstraint(A, lo, hi), options={"time_limit": left_s, "disp": False},
    )
    out = {"requests": None, "bound": None, "status": res.message.split("(")[0].strip(), "proven": res.status == 0,
           "infeasible": res.status == 2}
    bound = getattr(res, "mip_dual_bound", None)
    if bound is not None and np.isfinite(bound):
        out["bound"] = float(bound)
    if res.x is not None:
        x = np.round(res.x).astype(int)
        requests = []
        for c in keep:
            f, count = f_vars[c], int(x[n_vars[c][0]])
            flow = x[f]  # (L-1, N, N)
            start = x[u_vars[c][0]].copy()
            for _ in range(count):
                i = int(np.flatnonzero(start > 0)[0])
                start[i] -= 1
                path = [i]
                for layer in range(flow.shape[0]):
                    k = int(np.flatnonzero(flow[layer, path[-1]] > 0)[0])
                    flow[layer, path[-1], k] -= 1
                    path.append(k)
                requests.append(RequestPlan(c, np.array(path)))
        out["requests"] = requests
        if res.status == 0:
            out["bound"] = max(out["bound"] or -np.inf, float(res.fun))
    return out
