"""Load the solvers' compiled (numba) code before a solver's clock starts.

The route searches are compiled functions, cached on disk (``cache=True``): a fresh process
loads them in a fraction of a second, and the first process after an install compiles them in
several. Either way it is not solving, so :func:`~adaptive_resnet.planning.solve` calls
:func:`warm_up` first: it solves two tiny problems (one whose capacities bind, one whose do
not) with ``fast`` and ``exact``, which calls every compiled function with the argument types
real problems use.
"""

from __future__ import annotations

_warm = False


def warm_up() -> None:
    """Once per process: run the compiled code paths on a tiny problem."""
    global _warm
    if _warm:
        return
    _warm = True  # set first: the solves below call solve() themselves only through solvers
    from adaptive_resnet.accuracy import AccuracyTable
    from adaptive_resnet.models.naming import DropPlan
    from adaptive_resnet.planning.exact import solve_exact
    from adaptive_resnet.planning.fast import solve_fast
    from adaptive_resnet.planning.problem import Problem
    from adaptive_resnet.profile import ModelProfile, UnitCost
    from adaptive_resnet.system import Scenario

    units = (UnitCost("stage1", 10, 40, 2_000_000, 400_000, 40_000),
             UnitCost("stage2.block1", 20, 80, 4_000_000, 600_000, 40_000, 500_000, 100_000),
             UnitCost("stage2.block2", 20, 80, 4_000_000, 600_000, 40_000),
             UnitCost("stage2.block3", 20, 80, 4_000_000, 600_000, 40_000),
             UnitCost("head", 5, 20, 100_000, 50_000, 40))
    profile = ModelProfile("warmup", 8, 10, "cifar", 4, units)
    table = AccuracyTable(0.9, {DropPlan.dc(["stage2.block2"]): 0.88, DropPlan.dc(["stage2.block3"]): 0.87,
                                DropPlan.dc(["stage2.block2", "stage2.block3"]): 0.85}, name="warm-up")
    for limit_gmac in (0.02, 1.0):  # binding, then not
        devices = [{"name": f"d{i}", "memory_mb": 3.0, "speed_gmacs": 0.1 * (i + 1), "compute_limit_gmac": limit_gmac, "energy_j": 100.0}
                   for i in range(3)]
        scenario = Scenario(devices=devices, rates_mbps={"default": 20.0}, requests=3, accuracy_threshold=0.8)
        problem = Problem(scenario, profile, table)
        solve_fast(problem)
        solve_exact(problem, time_limit_s=0.2)
