"""The plan JSON format, written and read here only.

A plan document is what ``plan --json`` prints and ``plan --out`` writes: the solver's summary
(objective, latency, accuracy, energy, memory, violations, ...) and one object per request with
its ``drops`` (``"stage3.block2:DC"``), its accuracy and latency, and its ``placement`` (unit ->
device name, ``null`` where a dropped block does not run), and ``admitted`` (served, of, the
binding resource) where admission served fewer than the step's requests. ``evaluate`` reads the
requests back and re-checks them against a scenario.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adaptive_resnet.errors import UserInputError, unknown_choice
from adaptive_resnet.models.naming import DropPlan
from adaptive_resnet.planning.problem import Problem, RequestPlan


def plan_document(solution, problem: Problem) -> dict:
    """The JSON document of ``solution`` (a :class:`~adaptive_resnet.planning.solution.Solution`)."""
    ev = solution.evaluation
    return {
        "solver": solution.solver,
        "feasible": ev.feasible,
        "objective": ev.objective,
        "lower_bound": solution.lower_bound,
        "gap": solution.gap,
        "latency_s": ev.latency_s,
        "accuracy": ev.accuracy,
        "energy_j": ev.energy_j,
        "memory_bytes": ev.memory_bytes,
        "macs": ev.macs,
        "direct_bytes": ev.direct_bytes,
        "skip_bytes": ev.skip_bytes,
        "violations": ev.violations,
        "solve_time_s": solution.solve_time_s,
        "note": solution.note,
        # Admission (``plan --admit``): how many of the step's requests the plan serves, and why not more.
        "admitted": {"served": solution.served, "of": problem.requests, "unserved_reason": solution.unserved_reason}
        if solution.served < problem.requests else None,
        "requests": [
            {
                "drops": problem.candidates[r.candidate].plan.entries(),
                "accuracy": problem.candidates[r.candidate].accuracy,
                "accuracy_estimated": problem.candidates[r.candidate].estimated,
                "latency_s": ev.latencies_s[i],
                "placement": problem.placement(r),
            }
            for i, r in enumerate(solution.requests)
        ],
    }


def write_plan(path: str | Path, document: dict) -> None:
    """Write a plan document (:meth:`Solution.to_json`, on the problem its plan indexes) atomically."""
    from adaptive_resnet.run_folder import write_atomic

    write_atomic(path, json.dumps(document, indent=2) + "\n")


def request_plan(problem: Problem, obj: object, r: int) -> RequestPlan:
    """One request object of a plan document as a :class:`RequestPlan` of ``problem``; its drop
    set is its ``drops`` or, without them, the blocks placed on ``null`` (their DC dropped)."""
    where = f"requests[{r}]"
    if not isinstance(obj, dict):
        raise UserInputError(f"{where}: expected an object with 'placement' (and 'drops'), got {type(obj).__name__}")
    placement = obj.get("placement")
    if not isinstance(placement, dict):
        raise UserInputError(f"{where}: needs a 'placement' map of unit -> device")
    for unit, device in placement.items():
        if device is not None and not isinstance(device, str):
            raise UserInputError(f"{where}.placement.{unit}: expected a device name or null, got {json.dumps(device)}")
    unknown = [u for u in placement if u not in problem.units]
    if unknown:
        raise unknown_choice(f"unit in {where}", unknown[0], problem.units)
    missing = [u for u in problem.units if u not in placement]
    if missing:
        raise UserInputError(f"{where}: no placement for {', '.join(missing)} (use null for a dropped block)")
    if "drops" in obj:
        drops = obj["drops"]
        if not isinstance(drops, list) or not all(isinstance(d, str) for d in drops):
            raise UserInputError(f"{where}.drops: expected a list of 'stageS.blockB:DC' strings, got {json.dumps(drops)}")
        plan = DropPlan.of(drops)
    else:
        plan = DropPlan.dc([u for u, d in placement.items() if d is None])
    plan.validate(problem.units[1:-1])
    for u in (problem.units[0], problem.units[-1]):
        if placement[u] is None:
            raise UserInputError(f"{where}: {u} cannot be dropped")
    index = next((c for c, cand in enumerate(problem.candidates) if cand.plan == plan), None)
    if index is None:
        raise UserInputError(f"{where}: drop set {plan} has no accuracy in {problem.table.name} (neither measured nor "
                             f"estimable from its singles and pairs)")
    cand = problem.candidates[index]
    devices = []
    for u in cand.units:
        name = placement[problem.units[u]]
        if name not in problem.devices:
            raise unknown_choice(f"device for {problem.units[u]} in {where}", name, problem.devices)
        devices.append(problem.devices.index(name))
    return RequestPlan(index, np.array(devices))


def read_plan(path: str | Path, problem: Problem) -> tuple[Problem, list[RequestPlan]]:
    """The requests of the plan file at ``path``, for evaluation against ``problem``.

    Returns the problem the plans index into: ``problem`` widened to every drop set its
    accuracy source knows (measured or estimated), with the scenario's threshold kept, so that
    a request below the threshold is reported as a violation of Eq. 16 by
    :meth:`Problem.evaluate` like any other constraint, rather than refused here.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"cannot read plan {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise UserInputError(f"{path}: a plan is a JSON object with a 'requests' list (as `plan --out` writes it)")
    evaluating = problem.widened(keep_threshold=True)  # Eq. 16 is checked against the scenario's own threshold
    admitted = doc.get("admitted")
    if isinstance(admitted, dict) and isinstance(admitted.get("served"), int) and 0 <= admitted["served"] < problem.requests:
        # A plan for the requests admission served (plan --admit): checked as a plan for that many.
        evaluating = evaluating.subset(np.arange(len(problem.devices)), admitted["served"])
    try:
        return evaluating, [request_plan(evaluating, r, i) for i, r in enumerate(doc["requests"])]
    except UserInputError as exc:
        raise UserInputError(f"{path}: {exc}") from None
