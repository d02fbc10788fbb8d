"""Column generation: a strong lower bound, and plans built from the columns it finds.

Requests of a time step are interchangeable, so a plan is a multiset of *columns*: a drop set
with a device per running unit, used by n_p requests. The master LP chooses n_p >= 0 with
sum n_p = R under the per-device capacities (Eq. 13, 14, 17). In ``shared-weights`` mode it also
has h[j, i] in [0, 1], device i hosting unit j's weights, with the valid inequality

    (requests running unit j on device i) <= U[j, i] * h[j, i],

where U[j, i] is the most requests that device i's compute and memory could ever give unit j.
Weights thus enter the bound, amortised over at most U requests, instead of being left out.

Pricing is the capacity-aware segment DP of :mod:`~adaptive_resnet.planning.routing` with the
master's dual prices: it finds the column of least reduced cost among all drop sets, and its
value gives a Lagrangian lower bound (valid for any non-negative prices, so every round's bound
counts, converged or not). The segment DP relaxes per-device totals within one request, so the
columns it prices form a superset of the feasible ones and the bound stays valid.

Finally the master restricted to the columns found is solved with integer n_p and binary h
(HiGHS): a plan that is feasible whenever the program is ("price and branch").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from adaptive_resnet.planning.problem import Problem, RequestPlan
from adaptive_resnet.planning.routing import segment_route


@dataclass
class Column:
    candidate: int
    devices: np.ndarray
    cost: float  # the request's own objective: alpha * latency / L_ref + beta * (1 - accuracy)
    usage: np.ndarray  # (3, N): compute (MACs), activation memory (bytes), energy (J)
    pairs: np.ndarray  # flat indices unit * N + device of the (unit, device) pairs it runs


@dataclass
class ColumnGenerationResult:
    bound: float  # best Lagrangian bound found (-inf if none)
    columns: list[Column]
    rounds: int
    lp_value: float  # last master LP value (an upper estimate of the LP bound)
    lp_counts: np.ndarray | None = None  # n_p of the last master LP, per column


def make_column(problem: Problem, c: int, devices: np.ndarray) -> Column:
    cand = problem.candidates[c]
    devices = np.asarray(devices, int)
    memory, macs, energy = problem.request_usage(cand, devices)
    cost = problem.objective(problem.latency_s(cand, devices), cand.accuracy)
    return Column(c, devices, cost, np.vstack([macs, memory, energy]), cand.units * len(problem.devices) + devices)


def hosting_capacity(problem: Problem) -> np.ndarray:
    """U[j, i]: an upper bound on how many requests can run unit j on device i (>= 1, or 0 if never)."""
    U_units, R = len(problem.units), problem.requests
    min_macs = np.full(U_units, np.inf)
    min_act = np.full(U_units, np.inf)
    for cand in problem.candidates:
        np.minimum.at(min_macs, cand.units, cand.macs)
        np.minimum.at(min_act, cand.units, cand.memory_bytes)
    with np.errstate(divide="ignore", invalid="ignore"):
        by_compute = np.where(min_macs[:, None] > 0, np.floor(problem.compute_limit_macs[None, :] * (1 + 1e-9) / min_macs[:, None]), R)
        room = problem.memory_limit_bytes[None, :] * (1 + 1e-9) - (problem.weight_bytes[:, None] if problem.shared_weights else 0.0)
        by_memory = np.where(min_act[:, None] > 0, np.floor(room / min_act[:, None]), R)
    cap = np.minimum(np.minimum(by_compute, by_memory), R)
    cap = np.where(np.isfinite(min_macs)[:, None], cap, 0)
    return np.maximum(cap, 0).astype(float)


def _prices_value(problem: Problem, lam: np.ndarray, mu: np.ndarray | None, cutoff: float, order: list[int],
                  floors: np.ndarray) -> tuple[float, Column | None]:
    """min over columns of cost + R * price, by the priced segment DP (None if nothing fits)."""
    R, N = problem.requests, len(problem.devices)
    weight = problem.alpha / problem.reference_latency_s
    empty = np.zeros((len(problem.units), N), bool)
    best, best_col = np.inf, None
    for c in order:
        if floors[c] >= min(best, cutoff):
            break  # order is by floor: no later drop set can do better
        cand = problem.candidates[c]
        comp_t = problem.compute_s(cand)
        node = R * (lam[0] * cand.macs[:, None] + lam[1] * cand.memory_bytes[:, None] + lam[2] * comp_t * problem.compute_w)
        if mu is not None:
            node = node + R * mu[cand.units]
        edge = R * lam[2][None, :, None] * problem.transfer_s(cand) * problem.transmit_w
        _, devices = segment_route(problem, cand, problem.memory_limit_bytes, problem.compute_limit_macs,
                                   problem.energy_limit_j, empty, node_price=node, edge_price=edge, latency_weight=weight)
        if not np.isfinite(_):
            continue
        col = make_column(problem, c, devices)
        L = np.arange(len(devices))
        moved = devices[:-1] != devices[1:]
        value = (col.cost + node[L, devices].sum()
                 + edge[L[:-1], devices[:-1], devices[1:]][moved].sum())
        if value < best:
            best, best_col = value, col
    return best, best_col


def _master_rows(problem: Problem, columns: list[Column], link: np.ndarray, extra_cols: int = 0):
    """The master's inequality rows: per device compute, memory (activations + hosted weights)
    and energy, then one linking row per (unit, device) pair, ``uses <= link[j, i] * h``.

    Variables: one n_p per column, one h per pair, then ``extra_cols`` more (zero here).
    Returns (A_ub, b_ub, pairs) with pairs the flat indices unit * N + device of the h's.
    """
    from scipy.sparse import coo_matrix

    N, P = len(problem.devices), len(columns)
    caps = np.concatenate([problem.compute_limit_macs, problem.memory_limit_bytes, problem.energy_limit_j])
    pairs = sorted({int(q) for col in columns for q in col.pairs}) if problem.shared_weights else []
    pair_row = {q: k for k, q in enumerate(pairs)}
    H = len(pairs)
    rows, cols, vals = [], [], []
    for p, col in enumerate(columns):
        usage = col.usage.ravel()
        nz = np.flatnonzero(usage)
        rows += nz.tolist()
        cols += [p] * len(nz)
        vals += usage[nz].tolist()
        if H:
            counts = np.bincount([pair_row[int(q)] for q in col.pairs], minlength=H)
            nzp = np.flatnonzero(counts)
            rows += (3 * N + nzp).tolist()
            cols += [p] * len(nzp)
            vals += counts[nzp].astype(float).tolist()
    for k, q in enumerate(pairs):  # weights on the memory rows, and -link * h on the linking rows
        j, i = divmod(q, N)
        rows += [N + i, 3 * N + k]
        cols += [P + k, P + k]
        vals += [problem.weight_bytes[j], -float(link[j, i])]
    A = coo_matrix((vals, (rows, cols)), shape=(3 * N + H, P + H + extra_cols)).tocsr()
    return A, np.concatenate([caps, np.zeros(H)]), pairs


def _master_lp(problem: Problem, columns: list[Column], U: np.ndarray):
    """Solve the master LP; returns (value, lam (3, N) >= 0, mu (units, N) >= 0 or None, x)."""
    from scipy.optimize import linprog

    R, N = problem.requests, len(problem.devices)
    P = len(columns)
    A_ub, b_ub, pairs = _master_rows(problem, columns, U, extra_cols=1)
    H = len(pairs)
    # The artificial variable keeps the master feasible before real columns cover R requests.
    big = 10.0 * max(col.cost for col in columns) + 10.0
    A_eq = np.zeros((1, P + H + 1))
    A_eq[0, :P] = 1.0
    A_eq[0, -1] = 1.0
    c = np.concatenate([[col.cost / R for col in columns], np.zeros(H), [big]])
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[R], bounds=[(0, None)] * P + [(0, 1)] * H + [(0, None)], method="highs")
    if res.status != 0:
        return np.inf, None, None, None
    lam = np.maximum(-res.ineqlin.marginals[: 3 * N].reshape(3, N), 0.0)
    mu = None
    if H:
        mu = np.zeros((len(problem.units), N))
        for k, q in enumerate(pairs):
            j, i = divmod(q, N)
            mu[j, i] = max(-res.ineqlin.marginals[3 * N + k], 0.0)
    return float(res.fun), lam, mu, res.x


def lagrangian_value(problem: Problem, priced_min: float, lam: np.ndarray, mu: np.ndarray | None, U: np.ndarray) -> float:
    """The Lagrangian bound for prices (lam, mu) given the least priced column value."""
    caps = np.vstack([problem.compute_limit_macs, problem.memory_limit_bytes, problem.energy_limit_j])
    value = priced_min - float((lam * caps).sum())
    if problem.shared_weights and mu is not None:
        # min over h in [0, 1] of h * (lam_mem_i * w_j - mu_ji * U_ji): only negative terms count.
        value += float(np.minimum(lam[1][None, :] * problem.weight_bytes[:, None] - mu * U, 0.0).sum())
    return value


def column_generation(problem: Problem, seed: list[tuple[int, np.ndarray]], time_budget_s: float,
                      floors: np.ndarray) -> ColumnGenerationResult:
    """Generate columns from ``seed`` routes until no column prices out or time runs out.

    ``floors[c]`` is a lower bound on drop set c's own objective (its capacity-free optimum):
    prices are non-negative, so no column of c can price below it.
    """
    t0 = time.perf_counter()
    U = hosting_capacity(problem)
    columns: list[Column] = []
    seen: set[tuple] = set()

    def add(col: Column) -> bool:
        key = (col.candidate, tuple(col.devices.tolist()))
        if key in seen:
            return False
        seen.add(key)
        columns.append(col)
        return True

    for c, devices in seed:
        add(make_column(problem, c, devices))
    order = [int(c) for c in np.argsort(floors) if np.isfinite(floors[c])]
    best_bound, lp_value, rounds, counts = -np.inf, np.inf, 0, None
    while time.perf_counter() - t0 < time_budget_s:
        rounds += 1
        lp_value, lam, mu, x = _master_lp(problem, columns, U)
        if lam is None:
            break
        counts = x[: len(columns)]
        priced_min, col = _prices_value(problem, lam, mu, np.inf, order, floors)
        if col is None:
            best_bound = np.inf  # no request fits the devices at all
            break
        best_bound = max(best_bound, lagrangian_value(problem, priced_min, lam, mu, U))
        if best_bound >= lp_value - 1e-9 * max(1.0, abs(lp_value)) or not add(col):
            break  # converged: the LP bound is reached or the best column is already in
    if counts is not None and len(counts) < len(columns):  # the last column came after the LP
        counts = np.append(counts, np.zeros(len(columns) - len(counts)))
    return ColumnGenerationResult(best_bound, columns, rounds, lp_value, counts)


def restricted_master_plan(problem: Problem, columns: list[Column], time_limit_s: float) -> list[RequestPlan] | None:
    """The best plan using only ``columns``: the master with integer n_p and binary h (HiGHS)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    R, N = problem.requests, len(problem.devices)
    P = len(columns)
    # Binary h: u <= R * h is exact (a device hosting a unit serves at most all R requests).
    A, b_ub, pairs = _master_rows(problem, columns, np.full((len(problem.units), N), float(R)))
    H = len(pairs)
    count = np.zeros((1, P + H))
    count[0, :P] = 1.0
    res = milp(
        c=np.concatenate([[col.cost / R for col in columns], np.zeros(H)]),
        integrality=np.ones(P + H), bounds=Bounds(0, np.concatenate([np.full(P, R), np.ones(H)])),
        constraints=[LinearConstraint(A, -np.inf, b_ub), LinearConstraint(count, R, R)],
        options={"time_limit": max(time_limit_s, 0.01), "disp": False},
    )
    if res.x is None:
        return None
    n = np.round(res.x[:P]).astype(int)
    return [RequestPlan(col.candidate, col.devices.copy()) for col, k in zip(columns, n, strict=True) for _ in range(k)]
