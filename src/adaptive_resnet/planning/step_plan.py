"""A time step's plan as a runtime runs it: typed, made once from the solver's solution.

The planner's :class:`~adaptive_resnet.planning.solution.Solution` speaks in candidate and
device *indices* of one :class:`~adaptive_resnet.planning.problem.Problem`; a runtime needs each
request's device per unit by *name*, its :class:`~adaptive_resnet.models.naming.DropPlan` and
what the planner predicted for it. :class:`StepPlan` is that view, built from a solution (or
written by hand, in tests and benchmarks) and handed to the runtime as it is: nothing is turned
into strings and parsed back on the way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models.naming import DropPlan


@dataclass(frozen=True)
class PlannedRequest:
    """One request's route: the device running each unit in network order (None: a dropped
    block, which does not run) and its drop set, with the planner's predictions."""

    placement: tuple[tuple[str, str | None], ...]
    drops: DropPlan = field(default_factory=DropPlan)
    latency_s: float = 0.0  # predicted (Eq. 14); 0 where nobody predicted it
    accuracy: float | None = None  # g(y) the planner counted on

    @classmethod
    def of(cls, placement: Mapping[str, str | None], drops: DropPlan | Iterable[str] = (), latency_s: float = 0.0,
           accuracy: float | None = None) -> PlannedRequest:
        """A hand-made route (``placement``: unit -> device or None). A unit placed nowhere must
        be a dropped block whose residual branch is dropped: anything else would cut the chain."""
        plan = drops if isinstance(drops, DropPlan) else DropPlan.of(drops)
        dc = {b for b, c in plan.drops if c.value == "DC"}
        for unit, device in placement.items():
            if device is None and unit not in dc:
                raise UserInputError(f"unit {unit} runs nowhere but its DC is not dropped")
        return cls(tuple(placement.items()), plan, float(latency_s), accuracy)

    def segments(self) -> list[tuple[str, list[str]]]:
        """Contiguous runs of running units per device, in order: [(device, [unit, ...]), ...]."""
        out: list[tuple[str, list[str]]] = []
        for unit, device in self.placement:
            if device is None:
                continue  # a dropped block: nothing runs, its input passes on
            if out and out[-1][0] == device:
                out[-1][1].append(unit)
            else:
                out.append((device, [unit]))
        return out

    def devices(self) -> set[str]:
        return {device for _, device in self.placement if device is not None}

    def units_on(self, device: str) -> list[str]:
        return [unit for unit, d in self.placement if d == device]


@dataclass(frozen=True)
class StepPlan:
    """What a runtime runs in one step: a route per planned request (requests beyond them are
    assigned round-robin), or the reason there is none."""

    requests: tuple[PlannedRequest, ...] = ()
    feasible: bool = True
    objective: float | None = None
    error: str | None = None
    solution: object | None = field(default=None, compare=False)  # the Solution it came from, if any
    # Admission: the step's requests beyond ``len(requests)`` do not fit and fail with this
    # reason (None: every request of the step is served, round-robin over the planned routes).
    unserved_reason: str | None = None

    @classmethod
    def from_solution(cls, solution, problem) -> StepPlan:
        """The routes of ``solution`` (a :class:`~adaptive_resnet.planning.solution.Solution`) on ``problem``
        (or on the widened problem it names, when it was downsized)."""
        problem = solution.problem or problem
        ev = solution.evaluation
        requests = tuple(
            PlannedRequest(tuple(problem.placement(r).items()), problem.candidates[r.candidate].plan, float(ev.latencies_s[k]),
                           float(problem.candidates[r.candidate].accuracy))
            for k, r in enumerate(solution.requests))
        error = None if ev.feasible else "; ".join(ev.violations) or "no feasible plan for this step"
        unserved = solution.unserved_reason or None
        if not requests and ev.feasible and unserved:  # nothing fits: a plan for none
            return cls((), False, None, f"not admitted: {unserved}", solution)
        return cls(requests, ev.feasible, float(ev.objective), error, solution, unserved)

    @classmethod
    def failed(cls, reason: str) -> StepPlan:
        """No plan: every request of the step fails with ``reason``."""
        return cls((), False, None, reason)

    @classmethod
    def of(cls, *requests: PlannedRequest) -> StepPlan:
        return cls(tuple(requests))

    @property
    def runnable(self) -> bool:
        return self.feasible and bool(self.requests)

    def request(self, index: int) -> PlannedRequest | None:
        """The route of a step's ``index``-th request (round-robin over the planned ones), or
        None where admission left it out."""
        if self.unserved_reason is not None and index >= len(self.requests):
            return None
        return self.requests[index % len(self.requests)]

    def hosts(self) -> dict[str, list[str]]:
        """Device -> the units it runs for some request of this plan, in network order."""
        units: dict[str, set[str]] = {}
        for req in self.requests:
            for unit, device in req.placement:
                if device is not None:
                    units.setdefault(device, set()).add(unit)
        order = {unit: k for k, (unit, _) in enumerate(self.requests[0].placement)} if self.requests else {}
        return {device: sorted(hosted, key=order.__getitem__) for device, hosted in units.items()}

    def dropped(self) -> set[DropPlan]:
        """The distinct drop sets of this plan's requests."""
        return {req.drops for req in self.requests}
