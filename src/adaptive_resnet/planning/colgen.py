"""Column generation: a strong lower bound, and plans built from the columns it finds.

Requests of a time step are interchangeable, so a plan is a multiset of *columns*: a drop set
with a device per running unit, used by n_p requests. The master LP chooses n_p >= 0 with
sum n_p = R under the per-device capacities (Eq. 13, 14, 17). In ``shared-weights`` mode it also
has h[j, i] in [0, 1], device i hosting unit j's weights, with the valid inequality

    (requests running unit j on device i) <= U[j, i] * h[j, i],

where U[j, i] is the most requests that device i's compute and memory could ever give unit j.
Weights thus enter the bound, amortised over at most U requests, instead of being left out.
Packing rows (:func:`packing_grid`) say what whole requests can share a device, which the LP
would otherwise fill with fractions of them.

Pricing is the capacity-aware segment DP of :mod:`~adaptive_resnet.planning.routing` with the
master's dual prices: it finds each drop set's column of least reduced cost (all that price
out enter the master, which HiGHS keeps and re-solves from its last basis), and the least
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
from adaptive_resnet.planning.residual import Residual
from adaptive_resnet.planning.routing import SegmentPrices, segment_route, segment_starts, segment_usage

PACKING_LEVELS = 24  # k = 1..K: the packing rows of packing_grid (12 gave N10-R3-tight 0.6073, 24 0.6080, 4 0.5974)
SMOOTHING = 0.5  # weight of the best bound's prices in the prices a round prices at


@dataclass
class Column:
    candidate: int
    devices: np.ndarray
    cost: float  # the request's own objective: alpha * latency / L_ref + beta * (1 - accuracy)
    usage: np.ndarray  # (3, N): compute (MACs), activation memory (bytes), energy (J)
    pairs: np.ndarray  # flat indices unit * N + device of the (unit, device) pairs it runs
    segments: tuple[np.ndarray, np.ndarray]  # (device (S,), usage (S, 3)) of its segments: routing.segment_usage
    packing: np.ndarray  # (3, K, N): its coefficients in the packing rows (packing_counts)
    memory_ratio: np.ndarray  # (N,): its coefficients in the memory ratio rows (memory_ratios)


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
    costs = problem.route_costs(c, devices)
    cost = problem.objective(costs.latency_s, cand.accuracy)
    segments = segment_usage(problem, cand, devices)
    return Column(c, devices, cost, np.vstack([costs.macs, costs.memory_bytes, costs.energy_j]), cand.units * len(problem.devices) + devices,
                  segments, packing_counts(problem, segments, packing_grid(problem)), memory_ratios(problem, cand, devices))


def memory_ratios(problem: Problem, cand, devices: np.ndarray) -> np.ndarray:
    """(N,): sum over the route's segments on each device i of a / (M_i - w), a the segment's
    activations and w its units' weights; zeros outside ``shared-weights`` mode.

    Row i of the master, "sum over columns of n_p times this <= 1", is valid for every plan: a
    device holds the weights of every unit it runs, so w <= W_i (the weights it hosts) for each
    segment on it, and the activations of all of them fit in M_i - W_i; hence the sum of
    a / (M_i - w) <= (sum of a) / (M_i - W_i) <= 1. The hosting rows amortise a unit's weights
    over the most requests any drop set could bring it, so without this row the LP put five
    requests of 41 MB on devices of 258 MB that hold their 80 MB of weights (N10-R30-tight),
    where four fit. The segment DP prices it per segment, exactly as the column counts it.
    """
    N = len(problem.devices)
    if not problem.shared_weights:
        return np.zeros(N)
    starts = segment_starts(devices)
    where = devices[starts]
    activations = np.add.reduceat(cand.memory_bytes, starts)
    weights = np.add.reduceat(problem.weight_bytes[cand.units], starts)
    room = problem.memory_limit_bytes[where] - weights
    with np.errstate(divide="ignore"):
        ratio = np.where(room > 0, activations / np.maximum(room, 1e-300), np.inf)
    return np.bincount(where, ratio, N)


def capacities(problem: Problem) -> np.ndarray:
    """(3, N): compute (MACs), memory (bytes) and energy (J) per device, the order of ``Column.usage``."""
    return np.vstack([problem.compute_limit_macs, problem.memory_limit_bytes, problem.energy_limit_j])


def packing_grid(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The packing rows' thresholds, (3, Q, N), and the row level k - 1 of each of the Q.

    Whole requests pack, fractions of requests do not. Row (r, k, i), for k = 1..K, reads

        sum over all segments s on device i of #{m in 1..k : use_r(s) > m * cap_r,i / (k + 1)} <= k.

    Valid for every plan: a segment's count is ceil((k+1) u / cap) - 1 < (k+1) u / cap, so the
    counts of segments that fit together sum to less than k + 1, and they are integers (this
    is Fekete and Schepers' dual feasible function u^(k) for bin packing, rounded down at its
    steps). E.g. k = 1: at most one segment on a device may use over half of it; k = 3: one
    over 3/4 and one over 1/4 cannot share it. The master LP, which mixes fractions of columns,
    lacks these rows: on N10-R3-tight it spread three requests, each needing two of the five
    fast devices, over those five. A segment is a maximal run on one device, so the segment
    DP prices a column's coefficients exactly (each threshold a segment passes costs its row's
    price) and the Lagrangian bound stays valid. Resources r: compute, activation memory and
    compute energy, as :func:`~adaptive_resnet.planning.routing.segment_usage` counts them
    (none more than what the device's capacity row counts for that segment).
    """
    key = ("packing_grid", PACKING_LEVELS)
    cache = problem.__dict__.setdefault("_colgen", {})
    if key not in cache:
        caps = capacities(problem)
        ks = [(k, m) for k in range(1, PACKING_LEVELS + 1) for m in range(1, k + 1)]
        fraction = np.array([m / (k + 1) for k, m in ks], float)
        cache[key] = (caps[:, None, :] * fraction[None, :, None], np.array([k - 1 for k, _ in ks], int))
    return cache[key]


def packing_counts(problem: Problem, segments: tuple[np.ndarray, np.ndarray], grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(3, K, N): the coefficients in the packing rows of :func:`packing_grid` of a route with
    ``segments`` (:func:`~adaptive_resnet.planning.routing.segment_usage`)."""
    thresholds, level = grid
    to_level = np.zeros((len(level), PACKING_LEVELS))
    to_level[np.arange(len(level)), level] = 1.0
    counts = np.zeros((3, PACKING_LEVELS, thresholds.shape[2]))
    for device, usage in zip(*segments, strict=True):
        counts[:, :, device] += (usage[:, None] > thresholds[:, :, device]).astype(float) @ to_level
    return counts


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


@dataclass
class Prices:
    """Dual prices of the master's rows, all >= 0: capacities (3, N), hosting links (units, N)
    or None, packing rows (3, K, N)."""

    lam: np.ndarray
    mu: np.ndarray | None
    pi: np.ndarray
    rho: np.ndarray  # (N,) memory ratio rows

    def blend(self, other: Prices, weight: float) -> Prices:
        """weight * self + (1 - weight) * other."""
        mu = None if self.mu is None else weight * self.mu + (1 - weight) * other.mu
        return Prices(weight * self.lam + (1 - weight) * other.lam, mu, weight * self.pi + (1 - weight) * other.pi,
                      weight * self.rho + (1 - weight) * other.rho)


def priced_value(problem: Problem, col: Column, prices: Prices) -> float:
    """A column's own objective plus R times what it uses at ``prices`` (the quantity pricing
    minimises: below R * sigma it prices out)."""
    value = float((prices.lam * col.usage).sum() + (prices.pi * col.packing).sum() + prices.rho @ col.memory_ratio)
    if prices.mu is not None:
        value += float(prices.mu.ravel()[col.pairs].sum())
    return col.cost + problem.requests * value


def _prices_value(problem: Problem, prices: Prices, cutoff: float, order: list[int],
                  floors: np.ndarray) -> tuple[float, list[tuple[float, Column]]]:
    """min over columns of :func:`priced_value`, by the priced segment DP (inf if nothing fits),
    and each drop set's least priced column below ``cutoff``, as (value, column) pairs."""
    R, N = problem.requests, len(problem.devices)
    lam, mu, pi = prices.lam, prices.mu, prices.pi
    weight = problem.alpha / problem.reference_latency_s
    empty = np.zeros((len(problem.units), N), bool)
    grid = packing_grid(problem)
    segment_price = None if not (pi.any() or prices.rho.any()) else \
        SegmentPrices.of(grid[0], R * pi[:, grid[1], :], R * prices.rho, problem.memory_limit_bytes)
    best, found = np.inf, []
    for c in order:
        if floors[c] >= max(best, cutoff):
            break  # order is by floor: no later drop set can do better, or price out
        cand = problem.candidates[c]
        comp_t = problem.compute_s(cand)
        node = R * (lam[0] * cand.macs[:, None] + lam[1] * cand.memory_bytes[:, None] + lam[2] * comp_t * problem.compute_w)
        if mu is not None:
            node = node + R * mu[cand.units]
        edge = R * lam[2][None, :, None] * problem.transfer_s(cand) * problem.transmit_w
        latency, devices = segment_route(problem, cand, problem.memory_limit_bytes, problem.compute_limit_macs,
                                         problem.energy_limit_j, empty, node_price=node, edge_price=edge, latency_weight=weight,
                                         segment_price=segment_price)
        if not np.isfinite(latency):
            continue
        col = make_column(problem, c, devices)
        value = priced_value(problem, col, prices)
        best = min(best, value)
        if value < cutoff:
            found.append((value, col))
    return best, found


def _master_rows(problem: Problem, columns: list[Column], link: np.ndarray):
    """The master's inequality rows: per device compute, memory (activations + hosted weights)
    and energy, then one linking row per (unit, device) pair, ``uses <= link[j, i] * h``.

    Variables: one n_p per column, then one h per pair.
    Returns (A_ub, b_ub, pairs) with pairs the flat indices unit * N + device of the h's.
    """
    from scipy.sparse import coo_matrix

    N, P = len(problem.devices), len(columns)
    caps = capacities(problem).ravel()
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
    A = coo_matrix((vals, (rows, cols)), shape=(3 * N + H, P + H)).tocsr()
    return A, np.concatenate([caps, np.zeros(H)]), pairs


_HIGHS_BANNER_SHOWN = False


def _highs():
    """A silent HiGHS instance. HiGHS prints its banner to stdout when the process makes its
    first one, before any option can be set; that would corrupt ``plan --json``."""
    global _HIGHS_BANNER_SHOWN
    import os
    import sys

    import highspy

    if _HIGHS_BANNER_SHOWN:
        highs = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 1)
                highs = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _HIGHS_BANNER_SHOWN = True
    highs.setOptionValue("output_flag", False)
    return highs


class _Master:
    """The master LP, kept in one HiGHS instance: each new column (and each new hosting
    variable with its linking row) is added to it, and each solve starts from the last basis.
    Rebuilding and solving it from scratch every round took most of column generation's time
    (N = 30, R = 10: 2.6 s of 5 s building rows, 1.1 s solving).

    Rows: capacities (3N: compute, memory, energy per device), the request count (sum n_p =
    R), then linking rows as pairs appear, and packing rows (:func:`packing_grid`) and memory
    ratio rows (:func:`memory_ratios`) as the LP violates them (:meth:`cut`).
    Columns: an artificial one (keeps the LP feasible before the columns cover R requests),
    then n_p per column and h per (unit, device) pair, in the order they were added.
    """

    def __init__(self, problem: Problem, U: np.ndarray) -> None:
        import highspy

        self.problem, self.U = problem, U
        N = len(problem.devices)
        self.N, self.R = N, problem.requests
        self.inf = highspy.kHighsInf
        self.highs = _highs()
        # Capacity rows divided by the capacity (MACs ~1e9, bytes ~1e8, joules ~1e2 side by side
        # left HiGHS with an unknown status on N30-R3-tight); their prices are scaled back.
        self.scale = np.maximum(capacities(problem).ravel(), 1e-12)
        upper = np.concatenate([np.ones(3 * N), [self.R]])
        lower = np.concatenate([np.full(3 * N, -self.inf), [self.R]])
        self.count_row = 3 * N
        self.highs.addRows(len(upper), lower, upper, 0, np.zeros(len(upper), np.int32), np.array([], np.int32), np.array([]))
        self.n_rows, self.n_cols = len(upper), 0
        self.columns: list[int] = []  # HiGHS column of each master column
        self.added: list[Column] = []  # the master columns, in order
        self.pair_var: dict[int, int] = {}  # pair -> HiGHS column of its h
        self.pair_row: dict[int, int] = {}  # pair -> HiGHS row of its linking constraint
        self.packing_row: dict[int, int] = {}  # flat (r, k-1, i) -> HiGHS row of that packing row
        self.ratio_row: dict[int, int] = {}  # device -> HiGHS row of its memory ratio row
        self._add_col(0.0, self.inf, np.array([self.count_row]), np.array([1.0]), cost=1e3)  # the artificial column

    def _add_col(self, lo: float, hi: float, rows: np.ndarray, vals: np.ndarray, cost: float) -> int:
        self.highs.addCol(float(cost), lo, hi, len(rows), np.asarray(rows, np.int32), np.asarray(vals, float))
        self.n_cols += 1
        return self.n_cols - 1

    def add(self, col: Column) -> None:
        N = self.N
        if self.problem.shared_weights:
            for q in np.unique(col.pairs):
                q = int(q)
                if q not in self.pair_var:  # a new hosting variable: weights on its device's memory row
                    j, i = divmod(q, N)
                    self.pair_var[q] = self._add_col(0.0, 1.0, np.array([N + i]), np.array([self.problem.weight_bytes[j] / self.scale[N + i]]), 0.0)
                    self.highs.addRow(-self.inf, 0.0, 1, np.array([self.pair_var[q]], np.int32), np.array([-float(self.U[j, i])]))
                    self.pair_row[q] = self.n_rows
                    self.n_rows += 1
        usage = col.usage.ravel()
        nz = np.flatnonzero(usage)
        packing = col.packing.ravel()
        present = [(row, packing[flat]) for flat, row in self.packing_row.items() if packing[flat]]
        present += [(row, col.memory_ratio[i]) for i, row in self.ratio_row.items() if col.memory_ratio[i]]
        rows = [nz, [row for row, _ in present], [self.count_row]]
        vals = [usage[nz] / self.scale[nz], [v for _, v in present], [1.0]]
        if self.problem.shared_weights:
            q, uses = np.unique(col.pairs, return_counts=True)
            rows.append([self.pair_row[int(k)] for k in q])
            vals.append(uses.astype(float))
        self.columns.append(self._add_col(0.0, self.inf, np.concatenate(rows).astype(int), np.concatenate(vals), col.cost / self.R))
        self.added.append(col)

    def cut(self, counts: np.ndarray) -> int:
        """Add the packing rows (:func:`packing_grid`) and memory ratio rows (:func:`memory_ratios`)
        that the LP solution ``counts`` (n_p per column) violates; returns how many. Only rows that
        bind are in the master: all packing rows, 3 K N, made each LP several times slower."""
        used = np.flatnonzero(counts > 1e-9)
        if not len(used):
            return 0
        total = sum(counts[p] * self.added[p].packing for p in used)  # (3, K, N)
        rhs = np.arange(1.0, PACKING_LEVELS + 1)[None, :, None]
        new = [int(f) for f in np.flatnonzero((total > rhs + 1e-6).ravel()) if int(f) not in self.packing_row]
        for flat in new:
            k = np.unravel_index(flat, total.shape)[1] + 1
            self.packing_row[flat] = self._add_row([col.packing.ravel()[flat] for col in self.added], float(k))
        ratio = sum(counts[p] * self.added[p].memory_ratio for p in used)  # (N,)
        devices = [int(i) for i in np.flatnonzero(ratio > 1 + 1e-6) if int(i) not in self.ratio_row]
        for i in devices:
            self.ratio_row[i] = self._add_row([col.memory_ratio[i] for col in self.added], 1.0)
        return len(new) + len(devices)

    def _add_row(self, coefficients: list[float], upper: float) -> int:
        """A row sum over the columns of coefficient * n_p <= upper; returns its index."""
        coef = np.asarray(coefficients, float)
        nz = np.flatnonzero(coef)
        self.highs.addRow(-self.inf, upper, len(nz), np.array(self.columns, np.int32)[nz], coef[nz])
        self.n_rows += 1
        return self.n_rows - 1

    def solve(self):
        """(value, Prices, sigma, n_p per column), sigma being the price of a request (the dual
        of sum n_p = R); (inf, None, None, None) if it fails."""
        import highspy

        self.highs.run()
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            self.highs.clearSolver()  # from scratch, without the last basis
            self.highs.run()
            if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                return np.inf, None, None, None
        sol = self.highs.getSolution()
        duals = np.maximum(-np.asarray(sol.row_dual), 0.0)
        x = np.asarray(sol.col_value)
        N, K = self.N, PACKING_LEVELS
        lam = (duals[: 3 * N] / self.scale).reshape(3, N)
        pi = np.zeros(3 * K * N)
        for flat, row in self.packing_row.items():
            pi[flat] = duals[row]
        pi = pi.reshape(3, K, N)
        mu = None
        if self.problem.shared_weights:
            mu = np.zeros((len(self.problem.units), N))
            for q, row in self.pair_row.items():
                mu[divmod(q, N)] = duals[row]
        value = float(self.highs.getInfo().objective_function_value)
        rho = np.zeros(N)
        for i, row in self.ratio_row.items():
            rho[i] = duals[row]
        return value, Prices(lam, mu, pi, rho), float(sol.row_dual[self.count_row]), x[self.columns]


def lagrangian_value(problem: Problem, priced_min: float, prices: Prices, U: np.ndarray) -> float:
    """The Lagrangian bound at ``prices`` given the least priced column value."""
    value = priced_min - float((prices.lam * capacities(problem)).sum())
    value -= float((prices.pi * np.arange(1.0, prices.pi.shape[1] + 1)[None, :, None]).sum())  # packing rows: k at level k
    value -= float(prices.rho.sum())  # memory ratio rows: 1 each
    if problem.shared_weights and prices.mu is not None:
        # min over h in [0, 1] of h * (lam_mem_i * w_j - mu_ji * U_ji): only negative terms count.
        value += float(np.minimum(prices.lam[1][None, :] * problem.weight_bytes[:, None] - prices.mu * U, 0.0).sum())
    return value


def column_generation(problem: Problem, seed: list[tuple[int, np.ndarray]], time_budget_s: float,
                      floors: np.ndarray) -> ColumnGenerationResult:
    """Generate columns from ``seed`` routes until no column prices out or time runs out.

    ``floors[c]`` is a lower bound on drop set c's own objective (its capacity-free optimum):
    prices are non-negative, so no column of c can price below it.
    """
    t0 = time.perf_counter()
    U = hosting_capacity(problem)
    master = _Master(problem, U)
    columns = master.added
    seen: set[tuple] = set()

    def add(col: Column) -> bool:
        key = (col.candidate, tuple(col.devices.tolist()))
        if key in seen:
            return False
        seen.add(key)
        master.add(col)
        return True

    nothing_placed = Residual(problem)
    for c, devices in seed:
        if nothing_placed.fits(c, np.asarray(devices, int)):  # a seed no plan can use (a device overflows with it alone) only loosens the LP
            add(make_column(problem, c, devices))
    order = [int(c) for c in np.argsort(floors) if np.isfinite(floors[c])]
    best_bound, lp_value, rounds, counts = -np.inf, np.inf, 0, None
    center: Prices | None = None  # the prices of the best bound so far
    while time.perf_counter() - t0 < time_budget_s:
        rounds += 1
        lp_value, prices, sigma, counts = master.solve()
        if prices is None:
            break
        cutoff = problem.requests * sigma
        # Smoothed prices (Wentges 1997): pricing at a blend of the LP's prices and those of
        # the best bound so far damps the LP's oscillating duals, which otherwise make the
        # master tail off over many rounds. Any prices >= 0 give a valid bound.
        for at in ([center.blend(prices, SMOOTHING), prices] if center is not None else [prices]):
            priced_min, found = _prices_value(problem, at, cutoff, order, floors)
            if not np.isfinite(priced_min):
                return ColumnGenerationResult(np.inf, columns, rounds, lp_value, None)  # no request fits the devices at all
            bound = lagrangian_value(problem, priced_min, at, U)
            if bound > best_bound:
                best_bound, center = bound, at
            # Every drop set's best column that prices out at the LP's prices enters, not
            # just the best one: the master then needs several times fewer rounds.
            added = [add(col) for _, col in sorted(found, key=lambda f: f[0]) if priced_value(problem, col, prices) < cutoff]
            if any(added):
                break  # else a mis-price: price at the LP's own prices
        converged = best_bound >= lp_value - 1e-9 * max(1.0, abs(lp_value)) or not any(added)
        if converged and not master.cut(counts):  # converged for its rows, and it violates no packing row
            break
    if counts is not None and len(counts) < len(columns):  # the last column came after the LP
        counts = np.append(counts, np.zeros(len(columns) - len(counts)))
    return ColumnGenerationResult(best_bound, columns, rounds, lp_value, counts)


def restricted_master_plans(problem: Problem, columns: list[Column], time_limit_s: float, keep: int = 4) -> list[list[RequestPlan]]:
    """Plans using only ``columns``: the master with integer n_p and binary h, solved by HiGHS
    within ``time_limit_s`` (its build, a few ms, not counted: the stages after it check the clock); the last ``keep`` plans it improved through, best last (none if
    it found none). The earlier ones serve as starts for local search: on N10-R10-tight the
    master's best plan over its 91 columns (0.5659) stayed where it was under local search,
    while one it passed through (0.576) led to 0.5523."""
    import highspy

    R, N = problem.requests, len(problem.devices)
    P = len(columns)
    # Binary h: u <= R * h is exact (a device hosting a unit serves at most all R requests).
    A, b_ub, pairs = _master_rows(problem, columns, np.full((len(problem.units), N), float(R)))
    H = len(pairs)
    highs = _highs()
    highs.setOptionValue("time_limit", max(time_limit_s, 0.01))
    highs.setOptionValue("mip_improving_solution_save", True)
    cost = np.concatenate([[col.cost / R for col in columns], np.zeros(H)])
    upper = np.concatenate([np.full(P, float(R)), np.ones(H)])
    highs.addCols(P + H, cost, np.zeros(P + H), upper, 0, np.zeros(P + H, np.int32), np.array([], np.int32), np.array([]))
    highs.changeColsIntegrality(P + H, np.arange(P + H, dtype=np.int32), np.full(P + H, highspy.HighsVarType.kInteger))
    A = A.tocsr()
    highs.addRows(A.shape[0], np.full(A.shape[0], -highspy.kHighsInf), b_ub, A.nnz, A.indptr[:-1].astype(np.int32),
                  A.indices.astype(np.int32), A.data.astype(float))
    highs.addRow(float(R), float(R), P, np.arange(P, dtype=np.int32), np.ones(P))
    highs.run()
    plans = []
    for solution in highs.getSavedMipSolutions()[-keep:]:
        n = np.round(np.asarray(solution.col_value)[:P]).astype(int)
        if n.sum() == R:
            plans.append([RequestPlan(col.candidate, col.devices.copy()) for col, k in zip(columns, n, strict=True) for _ in range(k)])
    return plans

