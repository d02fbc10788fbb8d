"""Block allocation and downsizing (paper, Sec. IV): the problem, its cost model, the solvers."""

from __future__ import annotations

import inspect
from collections.abc import Callable

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
    params = list(inspect.signature(_solvers()[check_solver(solver)]).parameters)
    return tuple(params[1:])


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


__all__ = ["SOLVER_NAMES", "Evaluation", "Problem", "RequestPlan", "Solution", "check_solver", "load_problem", "solve",
           "solver_options"]
