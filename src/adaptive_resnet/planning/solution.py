"""What every solver returns."""

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
    # Admission (``admit=True``): the plan may serve fewer requests than the step has; then
    # ``unserved_reason`` names what stopped one more (the binding resource).
    unserved_reason: str = ""
    # The problem whose drop sets ``requests`` index, where it is not the one solved:
    # downsizing (``admission: downsize``) widens it to drop sets below the threshold.
    problem: Problem | None = None

    @property
    def served(self) -> int:
        return len(self.requests)

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
        """The plan document (:mod:`adaptive_resnet.planning.plan_file`)."""
        from adaptive_resnet.planning.plan_file import plan_document

        return plan_document(self, self.problem or problem)
