"""The peer a user would reach for: one joint MILP of the paper's Eq. 3-19, solved by HiGHS.

Not a solver of the product: the benchmarks run it beside ``fast`` and ``exact`` under the same
time limit (``planner_scale.py``). Per request r and drop set d (the candidates at the
threshold, so Eq. 16 holds by construction): a binary u[r, d] choosing the drop set (Eq. 4), a
binary x[r, d, l, i] placing its running unit l on device i (Eq. 3, 15), and a flow
f[r, d, l, i, k] in [0, 1] from unit l on i to unit l + 1 on k, which carries the transfer
(Eq. 10-11) and is forced to 0 or 1 by the binaries at its ends. With shared weights a binary
h[j, i] says device i hosts unit j's weights. Rows: one drop set a request, flow conservation,
memory (Eq. 13), compute (Eq. 14), energy (Eq. 17, 19: compute on the computing device, sending
on the sender), hosting (x <= h). The objective is Eq. 5, the mean latency over L_ref plus
beta times one minus the mean accuracy. Every coefficient comes from the ``Problem`` (its
``compute_s``, ``transfer_s`` and the candidates' costs): the one cost model, and the plan it
returns is scored by ``Problem.evaluate``.

Its size is what limits it: R x D x (L - 1) x N^2 flows, 1.0 M at N = 10, R = 30 and 340 M at
N = 100, R = 100; models over ``max_columns`` are not built (reported with their size).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from adaptive_resnet.planning import Problem, RequestPlan


@dataclass
class MilpResult:
    plan: list[RequestPlan] | None  # None: no integer solution within the limit (or not built)
    lower_bound: float | None  # HiGHS's dual bound on Eq. 5, where it has one
    columns: int
    rows: int
    build_s: float
    solve_s: float
    status: str


def columns_of(problem: Problem) -> int:
    """Variables of the joint model of ``problem`` (without building it)."""
    n, r = len(problem.devices), problem.requests
    per_request = sum(1 + len(c.units) * n + (len(c.units) - 1) * n * n for c in problem.candidates)
    return r * per_request + (len(problem.units) * n if problem.shared_weights else 0)


def solve_joint_milp(problem: Problem, time_limit_s: float, max_columns: int = 2_000_000) -> MilpResult:
    t0 = time.perf_counter()
    columns = columns_of(problem)
    if columns > max_columns:
        return MilpResult(None, None, columns, 0, 0.0, 0.0, f"not built: {columns:,} variables")
    n, R, J = len(problem.devices), problem.requests, len(problem.units)
    alpha, beta, ref = problem.alpha, problem.beta, problem.reference_latency_s
    p_c, p_t = problem.compute_w, problem.transmit_w
    triplets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # the constraint matrix, in chunks

    def put(rows, cols, values) -> None:
        rows, cols = np.broadcast_arrays(np.asarray(rows), np.asarray(cols))
        triplets.append((rows.ravel(), cols.ravel(), np.broadcast_to(np.asarray(values, float), rows.shape).ravel()))

    row_lb, row_ub = [], []
    cost = np.zeros(columns)
    upper = np.ones(columns)
    integral = np.zeros(columns)
    blocks = []  # per drop set: (offset within a request's block, L)
    offset = 0
    for cand in problem.candidates:
        blocks.append((offset, len(cand.units)))
        offset += 1 + len(cand.units) * n + (len(cand.units) - 1) * n * n
    per_request = offset
    hosted0 = R * per_request  # h[j, i] after every request's block
    n_rows = 0

    def add_rows(count: int, lb: float, ub: float) -> int:
        nonlocal n_rows
        first = n_rows
        n_rows += count
        row_lb.extend([lb] * count)
        row_ub.extend([ub] * count)
        return first

    one_set = add_rows(R, 1.0, 1.0)  # Eq. 4: one drop set a request
    memory_row = add_rows(n, -np.inf, 0.0)  # upper bounds set below, per device
    compute_row = add_rows(n, -np.inf, 0.0)
    energy_row = add_rows(n, -np.inf, 0.0)
    for i in range(n):
        row_ub[memory_row + i] = problem.memory_limit_bytes[i]
        row_ub[compute_row + i] = problem.compute_limit_macs[i]
        row_ub[energy_row + i] = problem.energy_limit_j[i]
    devices = np.arange(n)
    for d, cand in enumerate(problem.candidates):
        start, L = blocks[d]
        comp = np.asarray(problem.compute_s(cand))  # (L, N) seconds
        trans = np.where(np.isfinite(problem.transfer_s(cand)), problem.transfer_s(cand), 0.0)  # (L, N, N)
        x_local = 1 + np.arange(L * n).reshape(L, n)
        f_local = 1 + L * n + np.arange((L - 1) * n * n).reshape(L - 1, n, n)
        for r in range(R):
            base = r * per_request + start
            u, x, f = base, base + x_local, base + f_local
            integral[u] = 1
            integral[x] = 1
            cost[u] = -beta * cand.accuracy / R
            cost[x] = alpha * comp / (R * ref)
            cost[f] = alpha * trans[:-1] / (R * ref)
            upper[x[:, ~problem.available]] = 0.0
            put(one_set + r, u, 1.0)
            # flow conservation: the first unit takes u; out of (l, i) = x[l, i]; into (l + 1, k) = x[l + 1, k]
            first = add_rows(1, 0.0, 0.0)
            put(first, np.append(x[0], u), np.append(np.ones(n), -1.0))
            out_rows = add_rows((L - 1) * n, 0.0, 0.0) + np.arange((L - 1) * n).reshape(L - 1, n)
            in_rows = add_rows((L - 1) * n, 0.0, 0.0) + np.arange((L - 1) * n).reshape(L - 1, n)
            put(out_rows[:, :, None], f, 1.0)
            put(out_rows, x[:-1], -1.0)
            put(in_rows[:, None, :], f, 1.0)
            put(in_rows, x[1:], -1.0)
            # memory (activations m_j per request), compute, energy per device
            put(memory_row + devices[None, :], x, cand.memory_bytes[:, None])
            put(compute_row + devices[None, :], x, cand.macs[:, None])
            put(energy_row + devices[None, :], x, comp * p_c)
            put(energy_row + devices[None, :, None], f, trans[:-1] * p_t)  # the sender pays
    if problem.shared_weights:
        h = hosted0 + np.arange(J * n).reshape(J, n)
        integral[h] = 1
        put(memory_row + devices[None, :], h, problem.weight_bytes[:, None])
        # x[r, d, l, i] <= h[unit(d, l), i], summed over the drop sets of a request (one is chosen)
        host_rows = add_rows(R * J * n, -np.inf, 0.0)
        for d, cand in enumerate(problem.candidates):
            start, L = blocks[d]
            for r in range(R):
                x = r * per_request + start + 1 + np.arange(L * n).reshape(L, n)
                put(host_rows + (r * J + cand.units[:, None]) * n + devices[None, :], x, 1.0)
        for r in range(R):
            put(host_rows + (r * J + np.arange(J)[:, None]) * n + devices[None, :], h, -1.0)
    rows, cols, values = (np.concatenate(part) for part in zip(*triplets, strict=True))
    a = sparse.csr_matrix((values, (rows, cols)), shape=(n_rows, columns))
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = milp(cost, integrality=integral, bounds=Bounds(np.zeros(columns), upper),
               constraints=LinearConstraint(a, np.asarray(row_lb), np.asarray(row_ub)),
               options={"time_limit": max(time_limit_s - build_s, 0.01), "disp": False})
    solve_s = time.perf_counter() - t1
    bound = getattr(res, "mip_dual_bound", None)
    bound = None if bound is None or not np.isfinite(bound) else float(bound) + beta
    if res.x is None:
        return MilpResult(None, bound, columns, n_rows, build_s, solve_s, res.message.split(".")[0])
    plan = []
    for r in range(R):
        chosen = max(range(len(problem.candidates)), key=lambda d: res.x[r * per_request + blocks[d][0]])
        start, L = blocks[chosen]
        x = res.x[r * per_request + start + 1 + np.arange(L * n)].reshape(L, n)
        plan.append(RequestPlan(chosen, x.argmax(1)))
    return MilpResult(plan, bound, columns, n_rows, build_s, solve_s, "optimal" if res.status == 0 else res.message.split(".")[0])
