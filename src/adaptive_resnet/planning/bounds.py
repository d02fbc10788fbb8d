"""A Lagrangian lower bound on a time step's optimum, and the prices it finds.

The capacity constraints (Eq. 13, 14, 17) are what couple the requests of a time step. Moving
them into the objective with prices lambda >= 0 per device and resource leaves one priced
routing problem per request; as requests are identical, its optimum, minus the prices times
the capacities, is a lower bound for every lambda (weak duality). The per-request problem is
solved by the segment DP with each device's whole capacity (a relaxation, so the bound stays
valid), and lambda is improved by projected subgradient steps (Polyak's rule).

Memory in ``shared-weights`` mode is priced on activations only; weights only add to the true
usage, so leaving them out keeps the bound valid.
"""

from __future__ import annotations

import time

import numpy as np

from adaptive_resnet.planning.problem import Problem
from adaptive_resnet.planning.routing import segment_route


def lagrangian_bound(problem: Problem, upper: float, time_budget_s: float = 0.5, iterations: int = 60) -> tuple[float, np.ndarray | None]:
    """(best bound found, prices (3, N) for compute, memory, energy) within ``time_budget_s``."""
    t0 = time.perf_counter()
    R, N = problem.requests, len(problem.devices)
    weight = problem.alpha / problem.reference_latency_s
    caps = np.vstack([problem.compute_limit_macs, problem.memory_limit_bytes, problem.energy_limit_j])
    empty = np.zeros((len(problem.units), N), bool)
    prices = np.zeros((3, N))
    best_bound, best_prices, theta, stall = -np.inf, None, 1.0, 0
    if not np.isfinite(upper):
        upper = None
    for _ in range(iterations):
        if time.perf_counter() - t0 > time_budget_s:
            break
        value, usage = np.inf, None
        for cand in problem.candidates:
            floor = problem.beta * (1 - cand.accuracy)
            if floor >= value:
                continue
            comp_t = problem.compute_s(cand)
            node = (prices[0] * cand.macs[:, None] / caps[0] + prices[1] * cand.memory_bytes[:, None] / caps[1]
                    + prices[2] * comp_t * problem.compute_w / caps[2])
            tr = problem.transfer_s(cand)
            edge = prices[2][None, :, None] * tr * problem.transmit_w / caps[2][None, :, None]
            latency, devices = segment_route(problem, cand, problem.memory_limit_bytes, problem.compute_limit_macs,
                                             problem.energy_limit_j, empty, node_price=node, edge_price=edge, latency_weight=weight)
            if not np.isfinite(latency):
                continue
            moved = devices[:-1] != devices[1:]
            priced = (weight * latency + node[np.arange(len(devices)), devices].sum()
                      + edge[np.arange(len(devices) - 1), devices[:-1], devices[1:]][moved].sum() + floor)
            if priced < value:
                value = priced
                use = np.zeros((3, N))
                np.add.at(use[0], devices, cand.macs)
                np.add.at(use[1], devices, cand.memory_bytes)
                np.add.at(use[2], devices, comp_t[np.arange(len(devices)), devices] * problem.compute_w)
                np.add.at(use[2], devices[:-1][moved], tr[np.arange(len(devices) - 1), devices[:-1], devices[1:]][moved] * problem.transmit_w)
                usage = use / caps
        if usage is None:
            return np.inf, None  # no single request fits the cluster: the time step is infeasible
        bound = value - prices.sum() / R
        if bound > best_bound + 1e-12:
            best_bound, best_prices, stall = bound, prices.copy(), 0
        else:
            stall += 1
            if stall >= 4:
                theta, stall = theta / 2, 0
        gradient = usage - 1.0 / R
        norm = float((gradient**2).sum())
        if norm < 1e-18:
            break
        target = upper if upper is not None else abs(bound) * 1.05 + 1e-3
        step = theta * max(target - bound, 1e-6) / norm
        prices = np.maximum(prices + step * gradient, 0.0)
    return best_bound, best_prices
