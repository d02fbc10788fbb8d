"""``paper``: the paper's own method, the baseline every other solver must beat.

Sec. IV-C relaxes "one device per block" (Eq. 15) to "at least one" (Eq. 20), solves the
relaxed binary problem with a genetic algorithm (MATLAB's ``ga`` in the paper; pymoo's GA here)
and turns each individual into a plan with Algorithm 1: of the devices allocated to a block, keep
the previous block's device if it is among them, else the one with the highest data rate from the
previous block's device, and for the first block the one with the highest capacity e(i).

Faithful where the text allows, and explicit where it does not:

* A chromosome holds x[r, i, j] for every request, device and unit (stem, blocks and the head)
  and y[r, b] for every residual block (1 = keep, 0 = drop the block's DC).
* A y that is not one of the accuracy table's drop sets has no g(y); it is infeasible, and its
  constraint violation is its Hamming distance to the nearest drop set in the table, which lets
  the GA climb towards valid ones.
* Algorithm 1 as printed never sets ``dvc`` when exactly one device is allocated; we set it,
  as the algorithm plainly intends. A block with no device at all violates Eq. 20 and is
  evaluated on the highest-capacity device.
* Constraints (Eq. 13, 14, 16, 17, 20) go to pymoo as inequality constraints, so feasible
  individuals beat infeasible ones (constraint domination); the objective is Eq. 5.
"""

from __future__ import annotations

import time

import numpy as np

from adaptive_resnet.models.naming import Connection
from adaptive_resnet.planning.problem import Problem, RequestPlan
from adaptive_resnet.planning.solution import Solution


def algorithm1(problem: Problem, x: np.ndarray, c: int) -> tuple[np.ndarray, int]:
    """Device per running unit of candidate ``c`` from the relaxed x (units x devices).

    Returns the devices and how many units had no device (violations of Eq. 20).
    """
    cand = problem.candidates[c]
    capacity = problem.speed_macs
    dvc = -1
    devices = np.empty(len(cand.units), int)
    uncovered = 0
    for layer, unit in enumerate(cand.units):
        allocated = np.flatnonzero(x[unit] & problem.available)
        if len(allocated) == 0:
            uncovered += 1
            allocated = np.flatnonzero(problem.available)
            dvc = int(allocated[capacity[allocated].argmax()]) if dvc < 0 or dvc not in allocated else dvc
        elif len(allocated) == 1:
            dvc = int(allocated[0])
        elif dvc in allocated:
            pass  # lines 12-15: keep the previous block's device
        elif dvc >= 0:
            dvc = int(allocated[problem.rate_bps[dvc, allocated].argmax()])  # lines 17-25
        else:
            dvc = int(allocated[capacity[allocated].argmax()])  # lines 27-34
        devices[layer] = dvc
    return devices, uncovered


def solve_paper(problem: Problem, pop_size: int = 100, generations: int = 100, seed: int = 0,
                time_limit_s: float | None = None) -> Solution:
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.problem import Problem as PymooProblem
    from pymoo.operators.crossover.pntx import TwoPointCrossover
    from pymoo.operators.mutation.bitflip import BitflipMutation
    from pymoo.operators.sampling.rnd import BinaryRandomSampling
    from pymoo.optimize import minimize
    from pymoo.termination import get_termination

    t0 = time.perf_counter()
    R, N, U = problem.requests, len(problem.devices), len(problem.units)
    blocks = problem.units[1:-1]
    patterns = np.ones((len(problem.candidates), len(blocks)), bool)  # y of each candidate
    for c, cand in enumerate(problem.candidates):
        for b, conn in cand.plan.drops:
            if conn is Connection.DC:
                patterns[c, blocks.index(b)] = False
    dc_only = [all(conn is Connection.DC for _, conn in cand.plan.drops) for cand in problem.candidates]
    per_request = N * U + len(blocks)

    def decode(genes: np.ndarray) -> tuple[list[RequestPlan], float, int]:
        plans, distance, uncovered = [], 0.0, 0
        for r in range(R):
            g = genes[r * per_request : (r + 1) * per_request]
            x = g[: N * U].reshape(U, N).astype(bool)
            y = g[N * U :].astype(bool)
            hamming = np.where(dc_only, (patterns != y).sum(1), len(blocks) + 1)
            c = int(hamming.argmin())
            distance += hamming[c]
            devices, missing = algorithm1(problem, x, c)
            uncovered += missing
            plans.append(RequestPlan(c, devices))
        return plans, distance, uncovered

    def overflow(ev) -> np.ndarray:
        used = [np.array(list(getattr(ev, k).values())) for k in ("memory_bytes", "macs", "energy_j")]
        limits = [problem.memory_limit_bytes, problem.compute_limit_macs, problem.energy_limit_j]
        return np.array([np.maximum(u - lim, 0).sum() / lim.sum() for u, lim in zip(used, limits, strict=True)])

    class Relaxed(PymooProblem):
        def __init__(self) -> None:
            super().__init__(n_var=R * per_request, n_obj=1, n_ieq_constr=5, xl=0, xu=1, vtype=bool)

        def _evaluate(self, X, out, *args, **kwargs):
            F, G = np.empty((len(X), 1)), np.empty((len(X), 5))
            for n, genes in enumerate(X):
                plans, distance, uncovered = decode(genes)
                ev = problem.evaluate(plans)
                F[n, 0] = ev.objective
                G[n] = [uncovered, distance, *overflow(ev)]
            out["F"], out["G"] = F, G

    algorithm = GA(pop_size=pop_size, sampling=BinaryRandomSampling(), crossover=TwoPointCrossover(),
                   mutation=BitflipMutation(), eliminate_duplicates=True)
    termination = get_termination("n_gen", generations)
    if time_limit_s is not None:
        from pymoo.core.termination import Termination
        from pymoo.termination.collection import TerminationCollection

        class Deadline(Termination):
            """Stop before a generation that would end past the limit: pymoo's "time" termination
            checks after one, and a generation of 40 took up to 0.4 s here (2 s overran by 18%).
            With room for 1.2 generations, 2 s still overran by 12-18% on a busy machine (a
            generation's time varies with the machine's load): the room is two of the longest.
            The initial population is always evaluated: a limit below one generation is exceeded."""

            def __init__(self) -> None:
                super().__init__()
                self.last, self.longest = time.perf_counter(), 0.0

            def _update(self, algorithm) -> float:
                now = time.perf_counter()
                self.longest, self.last = max(self.longest, now - self.last), now
                elapsed = now - t0
                return 1.0 if elapsed + 2.0 * self.longest > time_limit_s else elapsed / time_limit_s

        termination = TerminationCollection(termination, Deadline())
    result = minimize(Relaxed(), algorithm, termination, seed=seed, verbose=False)
    best = result.X if result.X is not None else result.pop[np.argmin(result.pop.get("CV").ravel())].X
    plans, _, _ = decode(np.asarray(best).astype(bool).ravel())
    evaluation = problem.evaluate(plans)
    note = f"GA: population {pop_size}, {result.algorithm.n_gen} generations"
    return Solution("paper", plans, evaluation, time.perf_counter() - t0, note=note)
