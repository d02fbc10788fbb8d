"""Block allocation and downsizing (paper, Sec. IV): the problem, its cost model, the solvers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np

from adaptive_resnet.errors import UserInputError, unknown_choice
from adaptive_resnet.planning.problem import Evaluation, Problem, RequestPlan, load_problem
from adaptive_resnet.planning.solution import Solution

# The one list of solvers: ours, the paper's GA, and the baselines standing for other systems.
SOLVER_NAMES = ("exact", "fast", "paper", "no-drop", "neurosurgeon", "exo", "petals")


def _solvers() -> dict[str, Callable[..., Solution]]:
    from adaptive_resnet.planning.baselines import BASELINES
    from adaptive_resnet.planning.exact import solve_exact
    from adaptive_resnet.planning.fast import solve_fast
    from adaptive_resnet.planning.paper import solve_paper

    solvers = {"exact": solve_exact, "fast": solve_fast, "paper": solve_paper, **BASELINES}
    assert tuple(solvers) == SOLVER_NAMES, "SOLVER_NAMES and the solvers disagree"
    return solvers


def check_solver(solver: str) -> str:
    """``solver`` if it is one of :data:`SOLVER_NAMES`, else a one-line error (before any work)."""
    if solver not in SOLVER_NAMES:
        raise unknown_choice("solver", solver, SOLVER_NAMES)
    return solver


def solver_options(solver: str) -> tuple[str, ...]:
    """The options ``solver`` takes (its keyword parameters after the problem)."""
    return _options_of(check_solver(solver))


@functools.cache
def _options_of(solver: str) -> tuple[str, ...]:
    # Read once per solver: inspect.signature took ~0.7 ms of every solve, a tenth of fast's.
    return tuple(list(inspect.signature(_solvers()[solver]).parameters)[1:])


def solve(problem: Problem, solver: str, **options: object) -> Solution:
    """Run solver ``solver`` (one of :data:`SOLVER_NAMES`) on ``problem``.

    An option the solver does not take is an error, not silently ignored. The solvers' compiled
    code is loaded (or compiled) before the solver starts its clock, so a time limit counts the
    solve alone.
    """
    fn = _solvers()[check_solver(solver)]
    unknown = sorted(set(options) - set(solver_options(solver)))
    if unknown:
        takes = ", ".join(solver_options(solver)) or "none"
        raise UserInputError(f"solver {solver} takes no option {unknown[0]!r} (its options: {takes})")
    if not problem.available.any():
        # Nothing can run: an infeasible plan that says why, rather than a solver's failure.
        import time

        t0 = time.perf_counter()
        return Solution(solver, [], problem.evaluate([]), time.perf_counter() - t0, note="no device available")
    from adaptive_resnet.planning.warmup import warm_up

    warm_up()
    return fn(problem, **options)


ADMITTING = ("exact", "fast")  # solvers that decide themselves how many requests to serve


def admit(problem: Problem, solver: str, **options: object) -> Solution:
    """A plan for as many of the step's requests as fit (most served first, then the
    objective), with :attr:`Solution.unserved_reason` naming the binding resource when some are
    left out. ``fast`` and ``exact`` decide it in their one solve (``admit=True``); the other
    solvers plan all requests or none, so for them the count is found by bisection (fewer
    requests never need more of any resource): at most 1 + log2(requests) solves.

    With the scenario's ``admission: downsize``, the requests left out are then planned on what
    the plan leaves, with every drop set the accuracy source knows (below the threshold too,
    :meth:`Problem.widened`), and refused only if they do not fit even so: one more solve."""
    sol = _admit(problem, solver, **options)
    if problem.scenario.admission == "downsize" and sol.served < problem.requests and problem.available.any():
        return _downsize(problem, solver, sol, options)
    return sol


def _downsize(problem: Problem, solver: str, sol: Solution, options: dict) -> Solution:
    """``sol`` (what fits at the threshold) and, on the capacity it leaves, a plan for the
    requests it left out with any drop set the accuracy source knows: one plan of the widened
    problem, which :attr:`Solution.problem` names."""
    wide = problem.widened(keep_threshold=False)
    number = {c.plan: k for k, c in enumerate(wide.candidates)}
    kept = [RequestPlan(number[problem.candidates[r.candidate].plan], r.devices) for r in sol.requests]
    memory, compute, energy = wide.remaining(kept)
    rest = wide.subset(np.arange(len(wide.devices)), problem.requests - sol.served, memory, compute, energy)
    extra = _admit(rest, solver, **options)  # the subset keeps the device numbers: its routes are the fleet's
    plan = kept + list(extra.requests)
    evaluation = wide.evaluate(plan, requests=len(plan))
    below = sum(a < problem.threshold for a in evaluation.accuracies)
    note = f"downsized: {below} of {len(plan)} served below the threshold {problem.threshold:g}"
    # Why not more: what stopped the first plan, unless the second served some (then what
    # stopped it, on what the first left).
    reason = "" if len(plan) == problem.requests else \
        f"{extra.unserved_reason} (on what the plan at the threshold left)" if extra.served else sol.unserved_reason
    return Solution(solver, plan, evaluation, sol.solve_time_s + extra.solve_time_s, note=note, unserved_reason=reason, problem=wide)


def _admit(problem: Problem, solver: str, **options: object) -> Solution:
    if solver in ADMITTING:
        return solve(problem, solver, admit=True, **options)
    sol = solve(problem, solver, **options)
    if sol.feasible or problem.requests == 0:
        return sol
    reason = "; ".join(sol.evaluation.violations[:2]) or sol.note
    all_devices = np.arange(len(problem.devices))
    fits, fails, best = 0, problem.requests, None  # 0 requests always fit; all of them do not
    while fails - fits > 1:
        mid = (fits + fails) // 2
        trial = solve(problem.subset(all_devices, mid), solver, **options)
        if trial.feasible:
            fits, best = mid, trial
        else:
            fails = mid
    if best is None:
        best = Solution(solver, [], problem.evaluate([], requests=0), sol.solve_time_s, note=sol.note)
    best.unserved_reason = reason
    return best


__all__ = ["ADMITTING", "SOLVER_NAMES", "Evaluation", "Problem", "RequestPlan", "Solution", "admit", "check_solver", "load_problem", "solve",
           "solver_options"]
