"""Block allocation and downsizing (paper, Sec. IV): the problem, its cost model, the solvers."""

from __future__ import annotations

from collections.abc import Callable

from adaptive_resnet.errors import unknown_choice
from adaptive_resnet.planning.problem import Evaluation, Problem, RequestPlan
from adaptive_resnet.planning.solution import Solution


def _solvers() -> dict[str, Callable[..., Solution]]:
    from adaptive_resnet.planning.exact import solve_exact
    from adaptive_resnet.planning.fast import solve_fast
    from adaptive_resnet.planning.paper import solve_paper
    from adaptive_resnet.simulation.baselines import BASELINES

    return {"exact": solve_exact, "fast": solve_fast, "paper": solve_paper, **BASELINES}


SOLVER_NAMES = ("exact", "fast", "paper", "no-drop", "neurosurgeon", "exo", "petals")


def solve(problem: Problem, solver: str, **options: object) -> Solution:
    """Run solver ``solver`` (one of :data:`SOLVER_NAMES`) on ``problem``."""
    solvers = _solvers()
    if solver not in solvers:
        raise unknown_choice("solver", solver, solvers)
    return solvers[solver](problem, **options)


__all__ = ["SOLVER_NAMES", "Evaluation", "Problem", "RequestPlan", "Solution", "solve"]
