"""What every solver returns, and the plan JSON format."""

from __future__ import annotations

from dataclasses import dataclass

from adaptive_resnet.planning.problem import Evaluation, Problem, RequestPlan


@dataclass
class Solution:
    solver: str
    requests: list[RequestPlan]
    evaluation: Evaluation
    solve_time_s: float
    lower_bound: float | None = None  # a proven bound on the optimal objective, where known
    note: str = ""

    @property
    def feasible(self) -> bool:
        return self.evaluation.feasible

    @property
    def gap(self) -> float | None:
        """Relative gap between this plan's objective and the lower bound."""
        if self.lower_bound is None or not self.feasible:
            return None
        return (self.evaluation.objective - self.lower_bound) / max(abs(self.lower_bound), 1e-12)

    def to_json(self, problem: Problem) -> dict:
        ev = self.evaluation
        return {
            "solver": self.solver,
            "feasible": ev.feasible,
            "objective": ev.objective,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "latency_s": ev.latency_s,
            "accuracy": ev.accuracy,
            "energy_j": ev.energy_j,
            "memory_bytes": ev.memory_bytes,
            "macs": ev.macs,
            "direct_bytes": ev.direct_bytes,
            "skip_bytes": ev.skip_bytes,
            "violations": ev.violations,
            "solve_time_s": self.solve_time_s,
            "note": self.note,
            "requests": [
                {
                    "drops": [f"{b}:{problem.candidates[r.candidate].plan.dropped(b).value}" for b in problem.candidates[r.candidate].plan.blocks()],
                    "accuracy": problem.candidates[r.candidate].accuracy,
                    "accuracy_estimated": problem.candidates[r.candidate].estimated,
                    "latency_s": ev.latencies_s[i],
                    "placement": problem.placement(r),
                }
                for i, r in enumerate(self.requests)
            ],
        }
